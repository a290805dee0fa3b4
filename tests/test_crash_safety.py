"""A trained model is never lost: failed saves, concurrent training, SIGKILL and Ctrl-C.

A bundle directory always holds either the previous complete bundle or the new complete one;
temporary directories (``.NAME.tmp-PID-*``) are never taken for a bundle and are swept by the
next save once their process is gone.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import model.storage.bundle as bundle_mod
from model.storage.bundle import FILES, copy_bundle, load_bundle
from model.errors import StoryError
from model.storage.store import cache_path, cached

from helpers import BIN, CAT, ROOT, Repl, error_line, random_bundle, tiny_config

TINY = ["--units", "16", "--embedding-dim", "4", "--no-chart"]


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file in a directory."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def leftovers(parent: Path) -> list[str]:
    return sorted(p for p in os.listdir(parent) if ".tmp-" in p or ".old-" in p)


def same_weights(a, b) -> bool:
    return sorted(a.weights) == sorted(b.weights) and all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two valid bundles of one configuration with different weights (A and B)."""
    d = tmp_path_factory.mktemp("pair")
    a = random_bundle(d / "A", seed=1, units=16, embedding_dim=4)
    b = random_bundle(d / "B", seed=2, units=16, embedding_dim=4)
    return load_bundle(a), load_bundle(b)


# ---- failed saves -----------------------------------------------------------------------
def _fail_on_write(n: int, exc: BaseException):
    real = bundle_mod.write_synced
    calls = {"n": 0}

    def write(path, data):
        calls["n"] += 1
        if calls["n"] == n:
            with open(path, "wb") as fh:  # a partial file, as a full disk leaves it
                fh.write(data[: len(data) // 2])
            raise exc
        return real(path, data)

    return write


def _no_space():
    return OSError(errno.ENOSPC, "No space left on device")


SAVE_FAILURES = [
    ("not-writable", "mkdtemp", PermissionError(errno.EACCES, "Permission denied"), "Permission denied; choose a directory you can write to"),
    ("read-only-fs", "mkdtemp", OSError(errno.EROFS, "Read-only file system"), "Read-only file system; choose a directory you can write to"),
    ("disk-full-weights", 1, None, "No space left on device; free some space or save elsewhere"),
    ("disk-full-vocab", 2, None, "No space left on device; free some space"),
    ("disk-full-config", 4, None, "No space left on device; free some space"),
    ("rename-fails", "swap", OSError(errno.EXDEV, "Invalid cross-device link"), "Invalid cross-device link; choose another directory"),
    ("ctrl-c", 3, KeyboardInterrupt(), None),
]


@pytest.mark.parametrize("name, where, exc, message", SAVE_FAILURES, ids=[c[0] for c in SAVE_FAILURES])
def test_failed_save_keeps_the_old_bundle_and_leaves_nothing(pair, tmp_path, monkeypatch, name, where, exc, message):
    a, b = pair
    target = tmp_path / "model dir"
    copy_bundle(a, target)
    before = snapshot(target)
    if where == "mkdtemp":
        monkeypatch.setattr(tempfile, "mkdtemp", lambda *x, **k: (_ for _ in ()).throw(exc))
    elif where == "swap":
        monkeypatch.setattr(bundle_mod, "_swap_into_place", lambda *x: (_ for _ in ()).throw(exc))
    else:
        monkeypatch.setattr(bundle_mod, "write_synced", _fail_on_write(where, exc or _no_space()))
    if message is None:
        with pytest.raises(KeyboardInterrupt):
            copy_bundle(b, target)
    else:
        with pytest.raises(StoryError) as e:
            copy_bundle(b, target)
        assert message in str(e.value) and "previous model there is untouched" in str(e.value)
        assert "\n" not in str(e.value)
    assert snapshot(target) == before
    assert same_weights(load_bundle(target), a)
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    copy_bundle(b, target)  # and the next save works
    assert same_weights(load_bundle(target), b) and leftovers(tmp_path) == []


def test_save_failure_in_the_repl_keeps_the_model(pair, tmp_path, monkeypatch):
    a, b = pair
    target = tmp_path / "saved"
    copy_bundle(b, target)
    before = snapshot(target)
    r = Repl(a)
    predictor = r.session.predictor
    monkeypatch.setattr(bundle_mod, "write_synced", _fail_on_write(1, _no_space()))
    err = error_line(r.run(f":save {target}"))
    assert f"cannot save to {target}: No space left on device" in err
    assert snapshot(target) == before and leftovers(tmp_path) == []
    assert r.session.predictor is predictor and r.session.bundle is a
    assert "next word after" in r.run("had a general")


@pytest.mark.slow  # trains in the REPL
def test_disk_full_after_training_in_the_repl_keeps_the_old_model(pair, monkeypatch):
    """Training succeeds but its bundle cannot be written: say so, keep using the old model."""
    a, _ = pair
    r = Repl(a, config=tiny_config(units=16, embedding_dim=4, epochs=2))
    predictor = r.session.predictor
    monkeypatch.setattr(bundle_mod, "write_synced", _fail_on_write(1, _no_space()))
    out = r.run(":train")
    err = error_line(out)
    assert "No space left on device; free some space or save elsewhere" in err
    assert "now using" not in out
    assert r.session.predictor is predictor and r.session.status == ""
    target = cache_path(CAT, r.session.config)
    assert not target.exists() and leftovers(target.parent) == []
    assert "next word after" in r.run("had a general")


# ---- concurrent training ----------------------------------------------------------------
@pytest.mark.slow  # two story-repl processes training
def test_two_processes_training_the_same_corpus(tmp_path):
    env = dict(os.environ)
    cmd = [str(BIN), "train", str(CAT), *TINY, "--epochs", "20", "--json"]
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr
        outs.append(json.loads(stdout))
    target = cache_path(CAT, tiny_config(units=16, embedding_dim=4, epochs=20))
    assert outs[0]["bundle"] == outs[1]["bundle"] == str(target)
    assert sorted(o["cached"] for o in outs) == [False, True]  # the lock made one wait and reuse
    bundle = load_bundle(target)
    assert bundle.metrics["epochs"] == outs[0]["epochs"] == outs[1]["epochs"]
    assert cached(CAT, tiny_config(units=16, embedding_dim=4, epochs=20)) is not None
    assert leftovers(target.parent) == []


# ---- SIGKILL ----------------------------------------------------------------------------
def check_bundle_dir(path: Path, old, context: str):
    """``path`` loads as a complete bundle: the old one, or a newly trained one."""
    bundle = load_bundle(path)  # verifies checksums, shapes and versions
    assert bundle.path == path
    assert set(os.listdir(path)) <= set(FILES), context
    if same_weights(bundle, old):
        return "old"
    assert bundle.config.units == 16 and bundle.config.embedding_dim == 4, context
    assert (path / "model.keras").is_file() and bundle.keras_model() is not None, context
    return "new"


def sigkill_after(proc: subprocess.Popen, wait_ready, delay: float) -> None:
    """Once ``wait_ready()`` returns, wait ``delay`` seconds and SIGKILL ``proc``; never leave it running."""
    try:
        wait_ready()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.slow  # three story-repl processes training, killed
def test_sigkill_during_training_never_breaks_the_bundle(pair, tmp_path):
    old, _ = pair
    out = tmp_path / "model"
    copy_bundle(old, out)
    rng = random.Random()
    seen = []
    for attempt in range(3):
        delay = rng.uniform(0.0, 2.5)
        proc = subprocess.Popen(
            [str(BIN), "train", str(CAT), *TINY, "--epochs", "40", "--out", str(out), "--force", "--json"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )

        def training_starts(proc=proc):  # called at once, in this iteration
            deadline = time.time() + 120
            line = ""
            while time.time() < deadline and "windows, ceiling" not in line and proc.poll() is None:
                line = proc.stderr.readline()  # training is about to start

        sigkill_after(proc, training_starts, delay)
        context = f"attempt {attempt}, killed {delay:.2f}s into training (exit {proc.returncode})"
        seen.append(check_bundle_dir(out, old, context))
        target = cache_path(CAT, tiny_config(units=16, embedding_dim=4, epochs=40))
        if target.exists():
            check_bundle_dir(target, old, context)
        for name in leftovers(tmp_path):  # a killed save's temporary directory is never the bundle
            assert (tmp_path / name).resolve() != out.resolve()
    copy_bundle(old, out)  # the next save sweeps what dead processes left behind
    assert leftovers(tmp_path) == []
    assert same_weights(load_bundle(out), old)


SAVE_LOOP = r"""
import sys
import model.storage.bundle as mb
from model.storage.bundle import copy_bundle, load_bundle
if sys.argv[4] == "fallback":
    mb.exchange_dirs = lambda a, b: False  # where renameat2 is missing: rename aside, then into place
a, b = load_bundle(sys.argv[1]), load_bundle(sys.argv[2])
copy_bundle(a, sys.argv[3])
print("ready", flush=True)
while True:
    copy_bundle(b, sys.argv[3])
    copy_bundle(a, sys.argv[3])
"""


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_sigkill_during_saves_leaves_old_or_new(pair, tmp_path, mode):
    """A process saving over the same directory in a loop, killed at random moments."""
    a, b = pair
    target = tmp_path / "model"
    rng = random.Random()
    counts = {"A": 0, "B": 0}
    for attempt in range(6):
        delay = rng.uniform(0.01, 0.4)
        proc = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(a.path), str(b.path), str(target), mode],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

        def saving(proc=proc):  # called at once, in this iteration
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()

        sigkill_after(proc, saving, delay)
        bundle = load_bundle(target)  # puts back a bundle moved aside, if the kill came mid-swap
        assert set(os.listdir(target)) in ({*os.listdir(a.path)}, {*os.listdir(b.path)})  # one whole bundle
        which = "A" if same_weights(bundle, a) else "B"
        assert same_weights(bundle, a if which == "A" else b), f"attempt {attempt} after {delay:.3f}s"
        assert bundle.vocab.tokens == a.vocab.tokens and bundle.config == a.config
        counts[which] += 1
    copy_bundle(a, target)
    assert leftovers(tmp_path) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_save_killed_between_its_renames_is_recovered(pair, tmp_path):
    """The rename fallback moves the old bundle aside first; if the process dies right then,
    the next load or save puts it back (and drops the dead process's temporary copy)."""
    a, b = pair
    target = tmp_path / "model"
    pid = _dead_pid()
    copy_bundle(a, tmp_path / "staging")
    os.rename(tmp_path / "staging", tmp_path / f".model.old-{pid}")
    copy_bundle(b, tmp_path / "staging")
    os.rename(tmp_path / "staging", tmp_path / f".model.tmp-{pid}-x1y2")
    assert not target.exists()
    assert same_weights(load_bundle(target), a)
    assert leftovers(tmp_path) == []


def test_a_temporary_directory_is_never_taken_for_the_bundle(pair, tmp_path, monkeypatch):
    a, b = pair
    target = cache_path(CAT, b.config)
    target.parent.mkdir(parents=True)
    pid = _dead_pid()
    copy_bundle(b, target.parent / "staging")
    os.rename(target.parent / "staging", target.with_name(f".{target.name}.tmp-{pid}-abcd"))
    with pytest.raises(StoryError, match="no model at"):
        load_bundle(target)
    assert cached(CAT, b.config) is None  # so it is trained again, not read from the leftover
    live = target.with_name(f".{target.name}.tmp-{os.getppid()}-live")  # a save still under way
    copy_bundle(b, target.parent / "staging")
    os.rename(target.parent / "staging", live)
    copy_bundle(a, target)
    assert leftovers(target.parent) == [live.name]  # only the dead process's copy was swept
    assert same_weights(load_bundle(target), a)


# ---- Ctrl-C and Ctrl-D in the terminal --------------------------------------------------
@pytest.fixture(scope="module")
def slow_bundle(tmp_path_factory) -> Path:
    """A tiny bundle whose configuration trains for 100000 epochs and never reaches its ceiling."""
    return random_bundle(
        tmp_path_factory.mktemp("slow") / "slow model", units=16, embedding_dim=4, epochs=100000, optimizer="sgd", lr=1e-4
    )


@pytest.fixture(scope="module")
def big_bundle(tmp_path_factory) -> Path:
    """A 512-unit bundle: generating 10000 words with it takes long enough to interrupt."""
    return random_bundle(tmp_path_factory.mktemp("big") / "big model", units=512)


@pytest.mark.slow  # the REPL in a pseudo-terminal, training
def test_ctrl_c_stops_repl_training_and_keeps_the_best_weights(slow_bundle, _private_home, term):
    t = term(_private_home, "--model", str(slow_bundle))
    t.expect(r"idle", timeout=60)
    t.send(":train\r")
    t.expect(r"training in the background", timeout=90)
    t.expect(r"\d+/100000", timeout=90)  # the toolbar: training (epoch) N/100000
    t.send("\x03")  # Ctrl-C on an empty line
    t.expect(r"stopping training", timeout=30)
    t.expect(r"interrupted; kept the best weights \(epoch \d+ of \d+\).*?now\s+using", timeout=90)
    t.expect(r"idle", timeout=30)
    t.send("the mice\r")
    t.expect(r"next word after .the mice.*?›", timeout=30)
    models = [p for p in (_private_home / "models").iterdir() if p.is_dir()]
    assert len(models) == 1
    bundle = load_bundle(models[0])
    assert bundle.metrics["interrupted"] is True and bundle.config.epochs == 100000
    assert bundle.keras_model() is not None

    t.send(":train\r")  # Ctrl-D while training: saves, then leaves cleanly
    t.expect(r"training in the background", timeout=60)
    t.expect(r"\d+/100000", timeout=90)  # the toolbar: training (epoch) N/100000
    code = t.quit_with("\x04")
    assert code == 0
    clean = t.text
    assert "Traceback" not in clean
    load_bundle(models[0])


@pytest.mark.slow  # the REPL in a pseudo-terminal
def test_ctrl_c_stops_generation_and_the_repl_goes_on(big_bundle, _private_home, term):
    t = term(_private_home, "--model", str(big_bundle))
    t.expect(r"idle", timeout=60)
    t.send(":len 10000\r")
    t.expect(r"generating 10000 words")
    t.send(":sample 1\r")
    t.expect(r"sampled decoding at temperature 1")
    t.send("the mice\r")
    t.expect(r"next word after .the mice.", timeout=30)
    time.sleep(0.3)
    t.send("\x03")
    t.expect(r"the mice .*?\[sampled, T=1; stopped after \d+ words\].*?›", timeout=30)
    t.send(":len 3\r")
    t.expect(r"generating 3 words")
    t.send("had a general\r")
    out = t.expect(r"next word after .had a general.*?\[sampled, T=1\].*?›", timeout=30)
    assert "stopped after" not in out
    assert t.quit_with("\x04") == 0
    assert "Traceback" not in t.text


def test_an_unwritable_model_cache_is_one_line(pair, tmp_path, monkeypatch, capsys):
    from repl.cli import main

    blocker = tmp_path / "not a dir"
    blocker.write_text("x")
    monkeypatch.setenv("STORY_REPL_HOME", str(blocker / "home"))
    assert main(["train", str(CAT), *TINY, "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and "cannot write to the model cache" in line[0]
    assert "set STORY_REPL_HOME to a directory you can write to" in line[0] and "Traceback" not in err
    a, _ = pair
    r = Repl(a, config=tiny_config(units=16, embedding_dim=4, epochs=2))
    out = r.run(":train")
    assert "cannot write to the model cache" in error_line(out)
    assert r.session.predictor.bundle is a
