"""Whatever a model directory holds, ``story-repl predict`` predicts or fails with one line.

Each example mutates one file of a real bundle (bytes flipped or cut, a JSON value replaced, an
array's type, shape or values changed), recomputes its checksum in config.json as anyone can,
and runs ``story-repl predict "had a" --model DIR`` as a process under a timeout. The outcome is
a prediction (exit 0, nothing on stderr), or exit non-zero with exactly one stderr line that
names a file of the bundle: never a traceback, a raw escape byte or a hang.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers import BIN, ROOT

pytestmark = pytest.mark.slow  # a process per example, 25 examples per file

FUZZED = ("config.json", "vocab.json", "weights.npz", "metrics.json", "words.json", "ngram.npz", "mixture.json")
TIMEOUT = 60  # seconds one load may take; a load that blocks (a pipe, a huge allocation) fails the test

ODD_VALUES = [float("nan"), float("inf"), float("-inf"), -1, 0, 1e308, -1e308, 2**62, 10**30, True, None, "",
              "NaN", "\x1b[2J\x1b]0;owned\x07", "\u202e", [], {}, [[[[]]]], {"a": 1}, "lstm", 99, -0.0, 5e-324]
INT_VALUES = [-1, 0, 1, 2**31, 2**62, -(2**62)]
FLOAT_VALUES = [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, 1e308, 5e-324, 1e30]
DTYPES = ["i1", "i4", "i8", "u8", "f2", "f4", "f8", ">f8", "?", "c8", "U3"]


@pytest.fixture(scope="module")
def base(default_bundle, tmp_path_factory) -> Path:
    """The default model without model.keras (predicting never reads it)."""
    dst = tmp_path_factory.mktemp("fuzz") / "model"
    dst.mkdir()
    for name in FUZZED:
        shutil.copyfile(default_bundle.path / name, dst / name)
    return dst


# ---- mutations ----------------------------------------------------------------------------
def bytes_mutation(data: bytes):
    """A few bytes replaced, then the file cut or extended."""
    n = max(1, len(data))
    flips = st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 255)), max_size=8)
    end = st.one_of(st.none(), st.integers(0, n), st.binary(min_size=1, max_size=64))
    return st.tuples(flips, end).map(lambda fe: _flipped(data, *fe))


def _flipped(data: bytes, flips, end) -> bytes:
    out = bytearray(data)
    for i, b in flips:
        if i < len(out):
            out[i] = b
    if isinstance(end, int):
        return bytes(out[:end])
    return bytes(out) + (end or b"")


def _paths(value, prefix=()):
    """Every place in a JSON value (the first items of long lists only)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i in sorted({0, 1, len(value) - 1}):
            if 0 <= i < len(value):
                yield from _paths(value[i], prefix + (i,))


def json_mutation(data: bytes):
    """One value replaced by an odd one, or one key removed, then written back as JSON."""
    doc = json.loads(data)
    places = list(_paths(doc))
    return st.tuples(st.sampled_from(places), st.sampled_from(ODD_VALUES + ["<drop>"])).map(lambda pv: _replaced(doc, *pv))


def _replaced(doc, place, value) -> bytes:
    doc = json.loads(json.dumps(doc))
    if not place:
        doc = value if value != "<drop>" else []
    else:
        parent = doc
        for p in place[:-1]:
            parent = parent[p]
        if value == "<drop>":
            del parent[place[-1]]
        else:
            parent[place[-1]] = value
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def npz_mutation(data: bytes):
    """One array: retyped, reshaped, cut, grown, one value replaced, or removed."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    how = st.sampled_from(["dtype", "2d", "cut", "grow", "value", "drop", "empty"])
    args = st.tuples(st.sampled_from(sorted(arrays)), how, st.sampled_from(DTYPES), st.integers(0, 2**31))
    return args.map(lambda a: _array_changed(arrays, *a))


def _array_changed(arrays, name, how, dtype, where) -> bytes:
    out = dict(arrays)
    a = arrays[name]
    with np.errstate(all="ignore"):
        if how == "dtype":
            out[name] = a.astype(dtype)
        elif how == "2d":
            out[name] = a.reshape(1, -1)
        elif how == "cut":
            out[name] = a.reshape(-1)[: a.size // 2]
        elif how == "grow":
            out[name] = np.concatenate([a.reshape(-1), a.reshape(-1)[:3]])
        elif how == "empty":
            out[name] = a.reshape(-1)[:0]
        elif how == "drop":
            del out[name]
        elif a.size:
            b = a.copy().reshape(-1)
            pool = FLOAT_VALUES if b.dtype.kind == "f" else INT_VALUES
            b[where % b.size] = pool[where % len(pool)]
            out[name] = b.reshape(a.shape)
    buf = io.BytesIO()
    np.savez(buf, **out)
    return buf.getvalue()


def mutation(name: str, data: bytes):
    structured = json_mutation(data) if name.endswith(".json") else npz_mutation(data)
    return st.one_of(bytes_mutation(data), structured)


# ---- one load -----------------------------------------------------------------------------
def with_file(base: Path, where: Path, name: str, data: bytes) -> Path:
    """A copy of ``base`` in ``where`` with ``name`` holding ``data`` (its checksum recomputed)."""
    model = where / "model"
    shutil.copytree(base, model, copy_function=os.link)
    (model / name).unlink()
    (model / name).write_bytes(data)
    if name != "config.json":
        info = json.loads((base / "config.json").read_text(encoding="utf-8"))
        info["files"][name] = hashlib.sha256(data).hexdigest()
        (model / "config.json").unlink()
        (model / "config.json").write_text(json.dumps(info), encoding="utf-8")
    return model


def predict(model: Path, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, STORY_REPL_HOME=str(home), COLUMNS="100")
    env.pop("STORY_REPL_DEBUG", None)
    try:
        return subprocess.run([str(BIN), "predict", "had a", "--model", str(model)], cwd=ROOT, env=env,
                              capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"story-repl predict did not finish in {TIMEOUT} s")


def check_outcome(done: subprocess.CompletedProcess, model: Path) -> None:
    out, err = done.stdout, done.stderr
    assert b"\x1b" not in out + err, (out, err)
    assert b"Traceback" not in out + err, err.decode("utf-8", "replace")
    if done.returncode == 0:
        assert err == b"" and b"%" in out, err.decode("utf-8", "replace")
        return
    lines = err.decode("utf-8", "replace").splitlines()
    assert len(lines) == 1 and lines[0].startswith("story-repl: error: "), lines
    assert any(name in lines[0] for name in FUZZED + ("model.keras",)), lines[0]


@pytest.mark.parametrize("name", FUZZED)
@settings(max_examples=25, deadline=None, derandomize=True, database=None, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_a_mutated_file_predicts_or_fails_with_one_line(base, name, data):
    original = (base / name).read_bytes()
    changed = data.draw(mutation(name, original), label=name)
    with tempfile.TemporaryDirectory() as tmp:
        model = with_file(base, Path(tmp), name, changed)
        check_outcome(predict(model, Path(tmp) / "home"), model)
