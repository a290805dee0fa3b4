"""The mixture's components behind one interface: a kind registered here, in the test file
alone, is made for every mixture, fitted by EM, scored and listed in the help; saved
mixtures of the first format still load."""
from __future__ import annotations

import json
import math
import shutil
from contextlib import contextmanager

import numpy as np
import pytest

from model.prediction.components import components_help, register, registered_names, unregister
from model.prediction.interface import Component
from model.storage.bundle import load_bundle, save_result
from model.text.corpus import read_corpus

from helpers import CAT, tiny_config

pytestmark = pytest.mark.usefixtures("fresh_home")

BUILT_IN = ["lstm", "ngram", "cache", "ncache"]


class Uniform(Component):
    """Every word alike: the least a component can know."""

    name = "uniform"
    help = "every word alike"

    def distribution(self, ctx):
        return np.full(ctx.total, 1.0 / ctx.total)


@contextmanager
def uniform_registered():
    register(Uniform)
    try:
        yield
    finally:
        unregister(Uniform.name)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model whose LSTM folds singletons into <unk> and holds out the last quarter."""
    from model.training.train import train

    tmp = tmp_path_factory.mktemp("components")
    corpus = tmp / "cat.txt"
    shutil.copyfile(CAT, corpus)
    result = train(read_corpus(corpus), tiny_config(units=32, embedding_dim=16, epochs=30, min_count=2, valid_fraction=0.25))
    return save_result(result, tmp / "model"), corpus


def test_a_registered_component_is_fitted_by_em_and_scores_a_text(model):
    from model.evaluation.evaluate import evaluate_text
    from model.prediction.build import heldout_for_weights, load_mixture, training_split
    from model.prediction.predictor import Predictor
    from model.prediction.scoring import fit_mixture_weights, score_stream, text_ids
    from model.prediction.weights import MIN_WEIGHT

    path, corpus_path = model
    bundle = load_bundle(path)
    without = load_mixture(bundle)
    assert without.names == BUILT_IN
    train, valid = training_split(read_corpus(corpus_path), bundle.config.valid_fraction)
    heldout, where = heldout_for_weights(train, valid)
    tokens = read_corpus(corpus_path).tokens[-150:] + ["zorblat", "the", "mice"]
    with uniform_registered():
        assert "uniform (every word alike)" in components_help() and registered_names()[-1] == "uniform"
        mix = load_mixture(bundle)
        assert mix.names == BUILT_IN + ["uniform"] and "uniform" in mix.active
        assert mix.weight_row(0)[-1] == 0.0  # the saved weights never heard of it
        w = fit_mixture_weights(mix, heldout, where)
        mix.weights = w
        # EM weighs it beside the others: a proper weight vector, the uniform's share small
        assert w.names == mix.names and w.fitted_on == "validation split"
        assert all(abs(sum(row) - 1) < 1e-9 for row in w.by_bucket + [w.overall])
        share = dict(zip(w.names, w.overall))
        assert MIN_WEIGHT / 2 < share["uniform"] < min(share["lstm"], share["ngram"]) / 10
        # alone it is as perplexed as the vocabulary is large (held-out words join it while scoring)
        assert len(mix.words) <= w.perplexity["uniform"] and w.perplexity["mixture"] < w.perplexity["uniform"] / 2
        # EM over a superset of the components fits the held-out text at least as well (up to the floors)
        assert w.perplexity["mixture"] <= without.weights.perplexity["mixture"] * 1.02
        # scoring: the fast path (each component's score) and the full distributions agree
        fresh = mix.fresh()
        ids, known = text_ids(fresh, tokens)
        fast = score_stream(fresh, ids, known, ranks=False)
        full = score_stream(fresh, ids, known, ranks=True)
        total = len(fresh.words)
        for res in (fast, full):
            assert np.all(np.isfinite(res["probs"]["uniform"])) and np.allclose(res["probs"]["uniform"], 1.0 / total)
        got = evaluate_text(bundle, tokens, predictor=Predictor(bundle, mixture=mix))
        assert set(got["components"]) == set(BUILT_IN + ["uniform"])
        assert math.isfinite(got["perplexity"]) and got["perplexity"] < got["components"]["uniform"]["perplexity"]
        assert sum(c["weight"] for c in got["components"].values()) == pytest.approx(1.0)
        # the distribution it helps make is proper; alone, it is itself
        pred = Predictor(bundle, mixture=mix)
        ids, _ = pred.encode(pred.tokenize("the mice had a general"))
        p = pred.distribution(ids)
        assert p.sum() == pytest.approx(1.0) and (p > 0).all()
        pred.components(["uniform"])
        assert np.allclose(pred.distribution(ids), 1.0 / len(pred.vocab))
    assert load_mixture(bundle).names == BUILT_IN  # unregistered: gone again
    with pytest.raises(Exception, match="unknown component 'uniform'"):
        without.set_active(["uniform"])


def test_the_neural_caches_sharpness_is_saved_with_it_and_format_1_still_loads(model, tmp_path):
    from model.prediction.build import load_mixture
    from model.storage.bundle import copy_bundle

    path, _ = model
    bundle = load_bundle(path)
    saved = json.loads((path / "mixture.json").read_text(encoding="utf-8"))
    assert saved["format_version"] == 2 and "theta" not in saved
    theta = saved["components"]["ncache"]["theta"]
    mix = load_mixture(bundle)
    assert mix.component("ncache").theta == theta
    # The first format kept the sharpness at the top level, beside the weights.
    old = {k: v for k, v in saved.items() if k != "components"}
    old.update(format_version=1, theta=theta)
    extras = {name: bundle.extra(name) for name in ("words.json", "ngram.npz")}
    extras["mixture.json"] = json.dumps(old).encode("utf-8")
    old_mix = load_mixture(load_bundle(copy_bundle(bundle, tmp_path / "v1", extras=extras)))
    assert old_mix.component("ncache").theta == theta
    assert old_mix.weights.to_dict() == mix.weights.to_dict()
    for m in (mix, old_mix):
        m.observe("the mice had a general council and the mice said".split())
    ids = [mix.words.index[t] for t in "the mice had a".split()]
    assert np.array_equal(mix.distribution(ids), old_mix.distribution(ids))


def test_the_help_lists_every_registered_component():
    import argparse

    from repl.cli import add_source_args

    text = components_help()
    for name in registered_names():
        assert f"{name} (" in text
    with uniform_registered():
        assert "uniform (every word alike)" in components_help()
        p = argparse.ArgumentParser()
        add_source_args(p)  # --components
        assert "uniform" in p.format_help()
    assert "uniform" not in components_help()
