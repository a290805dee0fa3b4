"""The sampled-softmax objective trains the same network; prediction still uses the full softmax."""
from __future__ import annotations

import numpy as np
import pytest

from model.storage.bundle import load_bundle, save_result
from model.text.corpus import read_corpus
from model.prediction.predictor import Predictor
from model.training.train import train

from helpers import ROOT, tiny_config


@pytest.mark.slow  # trains on 30 KB of Aesop
def test_sampled_objective_learns(tmp_path):
    text = (ROOT / "corpora" / "aesops_fables.txt").read_text(encoding="utf-8")[:30000]
    path = tmp_path / "fables.txt"
    path.write_text(text, encoding="utf-8")
    corpus = read_corpus(path)
    cfg = tiny_config(objective="sampled", num_sampled=64, min_count=1, units=32, embedding_dim=16, context=4, batch_size=64, epochs=3)
    result = train(corpus, cfg)
    assert len(result.vocab) > 500  # large enough that 64 samples are a real saving
    loss = result.history["loss"]
    assert len(loss) == 3 and loss[-1] < loss[0]
    p = Predictor(load_bundle(save_result(result, tmp_path / "b")))
    dist = p.distribution(p.encode(["the", "fox"])[0])
    assert dist.shape == (len(p.vocab),) and np.isclose(dist.sum(), 1.0, atol=1e-4)
    assert p.top_k(p.encode(["once", "upon", "a"])[0], 1)[0][0] != "<unk>"
