"""Distribution strategies: mirrored replicas match one device, multi-worker clusters agree,
only the chief writes, and a lost worker ends training with a one-line error.

Every multi-process test runs its processes in their own sessions under hard time limits and
kills their whole process groups (SIGKILL) however the test ends.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from model.training.distribute import cluster_failure, global_batch, is_chief, num_workers, worker_timeout
from model.errors import StoryError

from helpers import CAT, ROOT

PY = sys.executable


# ---- helpers ------------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of a process started with ``start_new_session``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


@contextlib.contextmanager
def processes():
    """Collects started processes; every one of them (and its group) is killed on the way out."""
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for proc in started:
            kill_group(proc)


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for proc in procs:
        left = max(0.1, deadline - time.monotonic())
        try:
            codes.append(proc.wait(timeout=left))
        except subprocess.TimeoutExpired:
            pytest.fail(f"a worker did not finish within {timeout:.0f} s")
    return codes


# A worker: the `story-repl` command line (repl.cli.main), plus this test's own record of the
# weights the worker ends with (train_and_cache returns them on every worker).
WORKER = r"""
import sys
import numpy as np
import model.storage.store as store

dump = sys.argv[1]
original = store.train_and_cache

def capture(*args, **kwargs):
    bundle, result = original(*args, **kwargs)
    np.savez(dump, *result.model.get_weights())
    return bundle, result

store.train_and_cache = capture
from repl.cli import main
sys.exit(main(sys.argv[2:]))
"""


def start_worker(started: list, tmp: Path, ports: list[int], index: int, args: list[str], timeout: float = 120) -> subprocess.Popen:
    env = dict(
        os.environ,
        TF_CONFIG=tf_config(ports, index),
        STORY_REPL_HOME=str(tmp / f"home{index}"),
        STORY_REPL_WORKER_TIMEOUT=str(timeout),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.pop("STORY_REPL_DEBUG", None)
    out = open(tmp / f"stdout{index}", "w")
    err = open(tmp / f"stderr{index}", "w")
    cmd = [PY, "-c", WORKER, str(tmp / f"weights{index}.npz"), "train", str(CAT), "--strategy", "multiworker", "--no-chart", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)
    out.close()
    err.close()
    started.append(proc)
    return proc


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


# ---- pure logic ---------------------------------------------------------------------------
def test_chief_and_workers_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief() and num_workers() == 1
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 0))
    assert is_chief() and num_workers() == 3
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], 2))
    assert not is_chief()
    both = {"cluster": {"chief": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(both))
    assert not is_chief() and num_workers() == 2
    monkeypatch.setenv("TF_CONFIG", json.dumps({**both, "task": {"type": "chief", "index": 0}}))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StoryError, match="TF_CONFIG"):
        is_chief()


def test_global_batch_splits_evenly():
    assert global_batch(64, 201, 2) == 64
    assert global_batch(65, 201, 2) == 66
    assert global_batch(201, 201, 2) == 202  # the whole text, rounded up
    assert global_batch(500, 201, 4) == 204
    assert global_batch(5, 3, 4) == 4
    assert global_batch(64, 201, 1) == 64


def test_worker_timeout_setting(monkeypatch):
    monkeypatch.delenv("STORY_REPL_WORKER_TIMEOUT", raising=False)
    assert worker_timeout() == 600
    monkeypatch.setenv("STORY_REPL_WORKER_TIMEOUT", "2.5")
    assert worker_timeout() == 2.5
    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("STORY_REPL_WORKER_TIMEOUT", bad)
        with pytest.raises(StoryError, match="STORY_REPL_WORKER_TIMEOUT"):
            worker_timeout()


def test_cluster_failure_is_one_line():
    heartbeat = (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at:\n  File \"x.py\", line 1\n"
        "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
        "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed."
    )
    msg = cluster_failure(RuntimeError(heartbeat))
    assert "\n" not in msg and "worker 1" in msg and "heartbeats" in msg
    closed = "Graph execution error:\nCollective ops is aborted by: Socket closed\nremote target /job:worker/replica:0/task:0"
    msg = cluster_failure(RuntimeError(closed))
    assert "\n" not in msg and "worker 0" in msg and "connection closed" in msg


def test_unknown_strategy():
    from model.training.distribute import make_strategy

    with pytest.raises(StoryError, match="unknown strategy"):
        make_strategy("tpu")


def test_training_batches_do_not_depend_on_iterators():
    """Every iterator over the training pipeline (Keras makes extra ones under a strategy, and
    every worker makes its own) yields the same batches; every epoch covers every window once."""
    from model.training.tfload import import_tensorflow

    import_tensorflow()
    from model.training.distribute import train_dataset

    ids = (np.arange(120) * 7) % 31
    ds = train_dataset(ids, 3, 20, seed=5, sequence=False)
    first = [x.numpy() for x, _ in ds.take(12)]
    again = [x.numpy() for x, _ in ds.take(12)]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    n = len(ids) - 3
    steps = -(-n // 20)
    for e in range(2):
        epoch = np.concatenate(first[e * steps : (e + 1) * steps])
        assert len(epoch) == n
        assert sorted(map(tuple, epoch)) == sorted(map(tuple, np.lib.stride_tricks.sliding_window_view(ids[:-1], 3) + 1))
    assert not np.array_equal(first[0], first[steps])  # a fresh order each epoch


# ---- mirrored over two logical CPU devices --------------------------------------------------
MIRRORED = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from model.config import Config
from model.text.corpus import read_corpus
from model.training.distribute import make_strategy
from model.training.train import train

corpus = read_corpus(sys.argv[1])
out = {"auto_replicas": make_strategy("auto")[1]}
for label, batch, epochs in (("mini", 64, 4), ("full", None, 3)):
    cfg = Config(units=16, embedding_dim=8, epochs=epochs, batch_size=batch)
    for strategy in ("default", "mirrored"):
        records = []
        result = train(corpus, cfg, on_progress=records.append, strategy=strategy)
        epochs_seen = [r for r in records if r.kind == "epoch"]
        out[f"{label}/{strategy}"] = {
            "replicas": result.replicas,
            "loss": result.history["loss"],
            "accuracy": result.history["accuracy"],
            "progress_replicas": sorted({r.replicas for r in records if r.kind in ("start", "batch", "epoch")}),
            "windows_per_step": [r.tokens_per_s * r.elapsed / (r.epoch * r.steps) for r in epochs_seen],
            "start": [r.message for r in records if r.kind == "start"][0],
        }
print(json.dumps(out))
"""


@pytest.mark.slow  # trains with two strategies
def test_mirrored_matches_one_device(tmp_path):
    """Two replicas (the CPU split into two logical devices) follow the single-device loss
    curve with the same global batch and seed: within rtol 1e-3 per epoch."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", STORY_REPL_HOME=str(tmp_path / "h"))
    with processes() as started:
        proc = subprocess.Popen([PY, "-c", MIRRORED, str(CAT)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        started.append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            pytest.fail("the mirrored run did not finish within 240 s")
    assert proc.returncode == 0, stderr[-3000:]
    runs = json.loads(stdout.strip().splitlines()[-1])
    assert runs["auto_replicas"] == 1  # no GPUs: auto is the default strategy
    for label, global_windows in (("mini", 64), ("full", 202)):
        one, two = runs[f"{label}/default"], runs[f"{label}/mirrored"]
        assert one["replicas"] == 1 and two["replicas"] == 2
        assert two["progress_replicas"] == [2]
        assert "over 2 replicas" in two["start"]
        np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-3)
        # Throughput counts the global batch, not one replica's share.
        np.testing.assert_allclose(two["windows_per_step"], global_windows, rtol=1e-6)
    np.testing.assert_allclose(runs["mini/default"]["windows_per_step"], 64, rtol=1e-6)
    np.testing.assert_allclose(runs["full/default"]["windows_per_step"], 201, rtol=1e-6)


# ---- two workers on this host ------------------------------------------------------------
@pytest.mark.slow  # a cluster of story-repl processes training
@pytest.mark.parametrize(
    "args, single",
    [
        pytest.param(["--units", "32", "--embedding-dim", "16", "--epochs", "400"], None, id="whole-text-to-ceiling"),
        pytest.param(
            ["--units", "16", "--embedding-dim", "8", "--epochs", "4", "--batch-size", "40", "--valid-fraction", "0.2"],
            dict(units=16, embedding_dim=8, epochs=4, batch_size=40, valid_fraction=0.2),
            id="mini-batch-validation",
        ),
    ],
)
def test_two_workers_agree_and_only_the_chief_writes(tmp_path, args, single):
    from model.storage.bundle import load_bundle
    from model.config import Config
    from model.text.corpus import read_corpus
    from model.prediction.predictor import Predictor
    from model.training.train import train

    ports = free_ports(2)
    with processes() as started:
        procs = [
            start_worker(started, tmp_path, ports, i, [*args, "--out", str(tmp_path / f"out{i}"), "--logdir", str(tmp_path / f"tb{i}"), "--json"])
            for i in range(2)
        ]
        codes = wait_all(procs, timeout=180)
    stderr = [(tmp_path / f"stderr{i}").read_text() for i in range(2)]
    assert codes == [0, 0], stderr
    reports = [json.loads((tmp_path / f"stdout{i}").read_text().strip().splitlines()[-1]) for i in range(2)]

    # Identical training on both workers: same decisions, same final weights.
    for key in ("epochs", "stop_reason", "accuracy", "val_loss"):
        assert reports[0][key] == reports[1][key], key
    if "--valid-fraction" not in args:
        assert "ceiling" in reports[0]["stop_reason"] and reports[0]["epochs"] < 400
    else:
        assert reports[0]["val_loss"] is not None
    w0, w1 = weights(tmp_path / "weights0.npz"), weights(tmp_path / "weights1.npz")
    assert len(w0) == len(w1) > 0
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)

    # Only the chief wrote: its bundle and TensorBoard files; nothing at all from worker 1.
    assert reports[0]["bundle"] == str(tmp_path / "out0") and reports[1]["bundle"] is None
    assert not (tmp_path / "out1").exists()
    assert not (tmp_path / "home1").exists()
    assert not (tmp_path / "tb1").exists()
    assert list((tmp_path / "tb0").glob("events.out.tfevents.*"))

    bundle = load_bundle(tmp_path / "out0")
    assert bundle.metrics["replicas"] == 2
    for a, b in zip(bundle.keras_model().get_weights(), w0):
        np.testing.assert_array_equal(a, b)
    out = Predictor(bundle).predict_text("the mice", 3)
    assert len(out["predictions"]) == 3

    if single is not None:  # a multi-worker step is a step on the mean loss of the global batch
        alone = train(read_corpus(CAT), Config(**single), strategy="default")
        np.testing.assert_allclose(bundle.metrics["history"]["loss"], alone.history["loss"], rtol=1e-3)
        np.testing.assert_allclose(bundle.metrics["history"]["val_loss"], alone.history["val_loss"], rtol=1e-3)


@pytest.mark.slow  # a cluster of story-repl processes, one killed
def test_lost_worker_fails_the_others_with_one_line(tmp_path):
    ports = free_ports(2)
    args = ["--units", "16", "--embedding-dim", "8", "--epochs", "100000"]
    with processes() as started:
        procs = [start_worker(started, tmp_path, ports, i, [*args, "--out", str(tmp_path / f"out{i}")], timeout=90) for i in range(2)]
        deadline = time.monotonic() + 120
        while "epoch" not in (tmp_path / "stderr1").read_text():
            assert procs[0].poll() is None and procs[1].poll() is None, (tmp_path / "stderr0").read_text()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        time.sleep(1.0)
        kill_group(procs[1])
        killed = time.monotonic()
        try:
            code = procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the chief did not notice the lost worker within 60 s")
        took = time.monotonic() - killed
    stderr = (tmp_path / "stderr0").read_text()
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert code != 0
    assert len(errors) == 1 and errors[0].startswith("story-repl: error: lost another worker"), stderr[-2000:]
    assert "Traceback" not in stderr
    assert took < 60
    assert not (tmp_path / "out0").exists()  # no bundle from a failed run


@pytest.mark.slow  # a story-repl worker waiting for its cluster to time out
def test_lone_worker_gives_up_waiting(tmp_path):
    """A worker whose peers never come gives up after STORY_REPL_WORKER_TIMEOUT with one line."""
    ports = free_ports(2)
    with processes() as started:
        proc = start_worker(started, tmp_path, ports, 0, ["--units", "8", "--epochs", "1"], timeout=6)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the lone worker kept waiting")
    stderr = (tmp_path / "stderr0").read_text()
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert code != 0
    assert len(errors) == 1 and "joined within 6 s" in errors[0], stderr[-2000:]
    models = tmp_path / "home0" / "models"
    assert not models.exists() or not [p for p in models.iterdir() if p.is_dir()]  # no bundle
