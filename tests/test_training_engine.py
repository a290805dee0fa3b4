"""Training engine: resume with optimizer state, TensorBoard scalars, Ctrl-C keeps the model, every arch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from model.storage.bundle import load_bundle, save_result
from model.text.corpus import read_corpus
from model.prediction.predictor import Predictor
from model.training.train import train

from helpers import BIN, CAT, ROOT, tiny_config


@pytest.mark.slow  # trains twice
def test_resume_restores_optimizer_state_and_continues(tmp_path):
    corpus = read_corpus(CAT)
    first = train(corpus, tiny_config(epochs=4))
    path = save_result(first, tmp_path / "b")
    bundle = load_bundle(path)
    model = bundle.keras_model()
    steps_before = int(model.optimizer.iterations.numpy())
    assert steps_before == 4  # one full-batch step per epoch, restored from model.keras
    for a, b in zip(model.get_weights(), first.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    second = train(corpus, bundle.config.replace(epochs=3), resume=bundle)
    assert int(second.model.optimizer.iterations.numpy()) == 7
    assert second.vocab.tokens == first.vocab.tokens
    assert second.history["loss"][-1] < first.history["loss"][0]


@pytest.mark.slow  # two story-repl processes training
def test_resume_command(tmp_path):
    env = dict(os.environ, STORY_REPL_HOME=str(tmp_path / "h"))
    out = tmp_path / "b"
    r = subprocess.run([str(BIN), "train", str(CAT), "--units", "32", "--embedding-dim", "8", "--epochs", "2", "--out", str(out), "--json", "--no-chart"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(BIN), "train", "--resume", str(out), "--epochs", "3", "--json", "--no-chart"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["bundle"] == str(out) and res["epochs"] == 5  # 2, then 3 more
    assert load_bundle(out).keras_model().optimizer.iterations.numpy() == 5


def test_tensorboard_scalars(tmp_path):
    import tensorflow as tf

    corpus = read_corpus(CAT)
    train(corpus, tiny_config(epochs=3), logdir=str(tmp_path / "tb"))
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert files
    tags = {}
    for event in tf.compat.v1.train.summary_iterator(str(files[0])):
        for v in event.summary.value:
            tags.setdefault(v.tag, []).append(event.step)
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(tags)
    assert tags["epoch_loss"] == [1, 2, 3]


@pytest.mark.slow  # trains each encoder to the accuracy ceiling (up to 200 epochs)
@pytest.mark.parametrize("arch", ["stacked", "bilstm"])
def test_every_arch_trains_saves_loads_predicts(tmp_path, arch):
    corpus = read_corpus(CAT)
    result = train(corpus, tiny_config(arch=arch, units=32, epochs=200))
    assert result.accuracy > 0.8
    p = Predictor(load_bundle(save_result(result, tmp_path / arch)))
    assert p.config.arch == arch
    assert p.predict_text("had a general", 3)["predictions"][0]["word"] == "council"


@pytest.mark.slow  # a story-repl process training until interrupted
def test_ctrl_c_in_train_keeps_and_saves_the_best_weights(tmp_path):
    env = dict(os.environ, STORY_REPL_HOME=str(tmp_path / "h"))
    out = tmp_path / "b"
    proc = subprocess.Popen(
        [str(BIN), "train", str(CAT), "--optimizer", "sgd", "--lr", "0.0001", "--epochs", "100000", "--out", str(out), "--json", "--no-chart"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline and "epoch" not in line:
            line = proc.stderr.readline()  # off a terminal, progress comes as plain lines
        assert "epoch" in line
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "interrupted; kept the best weights" in stderr
    res = json.loads(stdout)
    assert res["epochs"] >= 1 and "interrupted" in res["stop_reason"]
    bundle = load_bundle(out)
    assert len(bundle.vocab) == 112
