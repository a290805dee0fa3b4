"""A model directory is untrusted input: it may come from someone else and be hostile.

Every case copies a real bundle, tampers with it (recomputing the checksums in config.json where
anyone could) and checks that loading says one line naming the file and the problem, exits
non-zero without a traceback or a raw escape byte, writes nothing into the directory, and that
in the REPL the model loaded before stays in use. Loading never opens a path the model names on
its own: the training text is the one the user passes (checked by sha256) or a shipped corpus.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from helpers import CAT, Repl, error_line, random_bundle, story_repl
from model.storage.bundle import FILES, load_bundle
from model.storage.untrusted import visible
from repl.cli import main

HOSTILE = "\u001b[31mRED\u001b]0;PWNED\u0007\u001b[2J"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # newline and tab aside
SECRET = "zebra quokka narwhal " * 20  # words no model here was trained on


# ---- helpers ------------------------------------------------------------------------------
@pytest.fixture
def model(model_copy) -> Path:
    return model_copy


@pytest.fixture
def repl(default_bundle):
    return Repl(default_bundle)


def rewrite(d: Path, name: str, data: bytes | str) -> None:
    """Replace one file of a bundle and its checksum in config.json, as anyone can."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    (d / name).write_bytes(raw)
    edit_config(d, lambda c: c["files"].__setitem__(name, hashlib.sha256(raw).hexdigest()))


def edit_config(d: Path, change) -> None:
    info = json.loads((d / "config.json").read_text(encoding="utf-8"))
    change(info)
    (d / "config.json").write_text(json.dumps(info), encoding="utf-8")


def edit_json(d: Path, name: str, change) -> None:
    data = json.loads((d / name).read_text(encoding="utf-8"))
    change(data)
    rewrite(d, name, json.dumps(data))


def npz_bytes(arrays: dict, compressed: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def weights_of(d: Path) -> dict[str, np.ndarray]:
    with np.load(d / "weights.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def snapshot(d: Path) -> dict:
    """Every entry of ``d``: its type and, for a regular file, its sha256 (a pipe is never opened)."""
    out = {}
    for name in sorted(os.listdir(d)):
        st = os.lstat(d / name)
        out[name] = (stat.S_IFMT(st.st_mode), hashlib.sha256((d / name).read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None)
    return out


def guarded(fn, timeout: float = 60):
    """``fn()`` in a thread that must finish within ``timeout`` (a named pipe would block it)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still blocked after {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``story-repl ARGV`` in this process, with warnings made errors: (status, stdout, stderr)."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        rc = guarded(lambda: main(list(argv)))
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and "Warning" not in cap.err
    assert not RAW.search(cap.out + cap.err), repr(cap.out + cap.err)
    return rc, cap.out, cap.err


def refused(capsys, d: Path, *needles: str, argv=("predict", "had a")) -> str:
    """The one error line of ``story-repl ARGV --model d``, which must fail and leave ``d`` as it was."""
    before = snapshot(d)
    rc, out, err = cli(capsys, *argv, "--model", str(d))
    lines = err.splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("story-repl: error: "), err
    assert out == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert snapshot(d) == before
    return lines[0]


def refused_in_repl(repl, d: Path, *needles: str) -> str:
    """``:load d`` fails with one line and the model loaded before stays in use."""
    before, bundle, shot = repl.session.predictor, repl.session.bundle, snapshot(d)
    line = error_line(guarded(lambda: repl.run(f":load {d}")))
    assert not RAW.search(line)
    for needle in needles:
        assert needle in line, line
    assert repl.session.predictor is before and repl.session.bundle is bundle
    assert snapshot(d) == shot
    return line


def foreign(tmp_path: Path, text: str = SECRET, **cfg) -> tuple[Path, Path]:
    """A model (random weights, no n-gram files) of a text that is not shipped: (model, text)."""
    corpus = tmp_path / "private.txt"
    corpus.write_text(text, encoding="utf-8")
    return random_bundle(tmp_path / "foreign", corpus, units=16, embedding_dim=8, **cfg), corpus


# ---- 1. reading outside the directory ------------------------------------------------------
def test_a_recorded_path_without_sha256_is_never_read(model, capsys):
    for name in ("words.json", "ngram.npz", "mixture.json"):
        (model / name).unlink()
    edit_config(model, lambda c: c.update(corpus={"path": "/etc/passwd", "sha256": ""}))
    before = snapshot(model)
    rc, out, err = cli(capsys, "predict", "had a", "--model", str(model))
    assert rc == 0 and len(err.splitlines()) == 1
    assert "has no n-gram (words.json, ngram.npz, mixture.json), so the LSTM answers alone" in err
    assert "does not record the sha256 of its training text" in err
    assert not {"root", "nologin", "bin", ":"} & set(out.split())
    assert snapshot(model) == before  # nothing written: no words.json from /etc/passwd


def test_a_recorded_path_with_its_sha256_is_still_not_opened(tmp_path, capsys):
    path, text = foreign(tmp_path)
    before = snapshot(path)
    rc, out, err = cli(capsys, "predict", "zebra", "--model", str(path), "--json")
    assert rc == 0 and len(err.splitlines()) == 1
    sha = hashlib.sha256(text.read_bytes()).hexdigest()
    assert f"needs its training text private (sha256 {sha[:12]}…) to rebuild them; pass it with --corpus PATH" in err
    assert json.loads(out)["unknown"] == []  # the LSTM's own words: the n-gram was not rebuilt
    assert snapshot(path) == before


def test_the_text_the_user_passes_rebuilds_in_memory_when_its_sha256_matches(tmp_path, capsys):
    path, text = foreign(tmp_path)
    before = snapshot(path)
    rc, out, err = cli(capsys, "predict", "zebra", "--model", str(path), "--corpus", str(text), "--json")
    assert rc == 0 and err == ""
    assert {p["word"] for p in json.loads(out)["predictions"]} <= {"zebra", "quokka", "narwhal"}
    assert snapshot(path) == before  # rebuilt in memory only
    other = tmp_path / "other.txt"
    other.write_text("something else entirely .\n", encoding="utf-8")
    line = refused(capsys, path, "other.txt is not the text", "was trained on (sha256 differs); it needs private (sha256 ",
                   argv=("predict", "zebra", "--corpus", str(other)))
    assert "Traceback" not in line


def test_a_shipped_corpus_of_the_recorded_sha256_rebuilds_without_the_recorded_path(model, capsys):
    for name in ("words.json", "ngram.npz", "mixture.json"):
        (model / name).unlink()
    edit_config(model, lambda c: c["corpus"].update(path="/nowhere/belling_the_cat.txt"))
    before = snapshot(model)
    rc, out, err = cli(capsys, "predict", "had a", "--model", str(model), "--components", "ngram", "--json")
    assert rc == 0 and err == ""  # the n-gram was rebuilt, from the shipped copy
    assert "general" in [p["word"] for p in json.loads(out)["predictions"]]
    assert snapshot(model) == before


def whole(tmp_path: Path, text: str = SECRET, **cfg) -> tuple[Path, Path]:
    """Like :func:`foreign`, with its n-gram files saved (built from the text passed)."""
    from model.prediction.build import extras_of, load_mixture
    from model.storage.bundle import copy_bundle

    path, corpus = foreign(tmp_path, text, **cfg)
    bundle = load_bundle(path)
    bundle.use_text(str(corpus))
    return copy_bundle(bundle, tmp_path / "whole", extras=extras_of(load_mixture(bundle))), corpus


def test_eval_valid_needs_the_text_passed_for_a_model_from_elsewhere(tmp_path, capsys):
    path, text = whole(tmp_path, SECRET + "\n\n" + SECRET, valid_fraction=0.25)
    refused(capsys, path, "needs its training text private (sha256", "pass it with --corpus PATH", argv=("eval", "--valid", "--json"))
    rc, out, err = cli(capsys, "eval", "--valid", "--json", "--model", str(path), "--corpus", str(text))
    assert rc == 0 and json.loads(out)["tokens"] > 0


def test_a_partner_needs_the_text_passed_to_fit_its_weights(tmp_path, capsys):
    path, text = whole(tmp_path)
    partner = random_bundle(tmp_path / "partner", text, units=12, embedding_dim=8, seed=1)
    refused(capsys, path, "needs its training text private", "to fit the weights of a partner network; pass it with --corpus PATH",
            argv=("predict", "zebra", "--partner", str(partner)))
    rc, out, err = cli(capsys, "predict", "zebra", "--json", "--model", str(path), "--corpus", str(text), "--partner", str(partner))
    assert rc == 0 and err == ""


def test_load_in_the_repl_never_opens_the_recorded_path(repl, tmp_path):
    path, text = foreign(tmp_path)
    before = snapshot(path)
    out = guarded(lambda: repl.run(f":load {path}"))
    assert "loaded lstm/3 model" in out and "so the LSTM answers alone" in out and "pass it with --corpus PATH" in out
    assert repl.session.corpus_spec != str(text)  # :train never trains on a path the model names
    assert snapshot(path) == before


# ---- 2. escape sequences from files --------------------------------------------------------
@pytest.mark.parametrize("name", ["vocab.json", "words.json"])
def test_a_token_with_control_characters_is_refused(model, repl, capsys, name):
    edit_json(model, name, lambda v: v["tokens"].__setitem__(3, HOSTILE))
    line = refused(capsys, model, f"{name}:", "which no text gives", visible(repr(HOSTILE))[:30])
    assert ({"vocab.json", "words.json"} - {name}).pop() not in line
    refused_in_repl(repl, model, name)


def test_the_corpus_name_is_shown_visibly_everywhere(model, repl, capsys):
    edit_config(model, lambda c: c["corpus"].update(name=HOSTILE + "\x9b2J"))
    assert load_bundle(model).corpus_name == visible(HOSTILE + "\x9b2J")
    rc, out, err = cli(capsys, "eval", str(CAT), "--model", str(model), "--json")
    assert rc == 0 and json.loads(out)["model"]["corpus"] == visible(HOSTILE + "\x9b2J")
    rc, out, err = cli(capsys, "predict", "had a", "--model", str(model), "--json")
    assert rc == 0
    shown = guarded(lambda: repl.run(f":load {model}")) + repl.run(":info")
    assert "PWNED" in shown and not RAW.search(shown)


# ---- 3. named pipes and links --------------------------------------------------------------
@pytest.mark.parametrize("name", FILES)
def test_a_named_pipe_in_place_of_a_file_is_refused_at_once(model, repl, capsys, name):
    (model / name).unlink(missing_ok=True)
    os.mkfifo(model / name)
    refused(capsys, model, f"{name} is not a regular file (a named pipe); a model directory holds plain files only")
    refused_in_repl(repl, model, f"{name} is not a regular file (a named pipe)")


def test_a_named_pipe_as_a_process(model, tmp_path):
    (model / "vocab.json").unlink()
    os.mkfifo(model / "vocab.json")
    r = story_repl("predict", "had a", "--model", str(model), home=tmp_path / "home", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "vocab.json is not a regular file (a named pipe)" in r.stderr


def test_a_symbolic_link_is_refused(model, repl, capsys):
    (model / "vocab.json").unlink()
    (model / "vocab.json").symlink_to("/etc/passwd")
    refused(capsys, model, "vocab.json is a symbolic link; a model directory holds plain files only")
    refused_in_repl(repl, model, "vocab.json is a symbolic link")


# ---- 4. numbers and shapes -----------------------------------------------------------------
def _weights(change):
    def edit(d: Path):
        w = weights_of(d)
        change(w)
        rewrite(d, "weights.npz", npz_bytes(w))

    return edit


WEIGHT_CASES = [
    ("all-nan", _weights(lambda w: w.update({k: np.full_like(v, np.nan) for k, v in w.items()})), "holds nan where a finite number is needed"),
    ("times-1e30", _weights(lambda w: w.update({k: v * np.float32(1e30) for k, v in w.items()})), "beyond the ±1e+06 a trained weight stays within"),
    ("float64-1e300", _weights(lambda w: w.update({"lstm/kernel": w["lstm/kernel"].astype(np.float64) * 1e300})), "array 'lstm/kernel' holds"),
    ("inf-kernel", _weights(lambda w: w["lstm/kernel"].__setitem__((0, 0), np.inf)), "array 'lstm/kernel' holds inf"),
    ("int8", _weights(lambda w: w.update({"lstm/kernel": w["lstm/kernel"].astype(np.int8)})), "array 'lstm/kernel' has type int8, which a story-repl model never holds"),
    ("compressed", lambda d: rewrite(d, "weights.npz", npz_bytes(weights_of(d), compressed=True)), "is compressed; a story-repl file stores plain arrays"),
]


@pytest.mark.parametrize("case, damage, message", WEIGHT_CASES, ids=[c[0] for c in WEIGHT_CASES])
def test_weights_out_of_range_or_type_are_refused(model, repl, capsys, case, damage, message):
    damage(model)
    refused(capsys, model, "weights.npz", message)
    refused_in_repl(repl, model, message)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e30), (np.float64, 1e300)])
def test_no_numpy_warning_reaches_the_screen(model, tmp_path, dtype, scale):
    """Weights that would overflow the forward pass are refused at load, before any warning."""
    rewrite(model, "weights.npz", npz_bytes({k: (v.astype(np.float64) * scale).astype(dtype) for k, v in weights_of(model).items()}))
    r = story_repl("predict", "had a", "--model", str(model), home=tmp_path / "home", timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Warning" not in r.stderr
    assert "beyond the ±1e+06 a trained weight stays within" in r.stderr


def test_weights_at_the_bound_predict_without_a_warning(model, capsys):
    w = weights_of(model)
    rewrite(model, "weights.npz", npz_bytes({k: (v / max(np.abs(v).max(), 1e-9) * 1e6).astype(np.float32) for k, v in w.items()}))
    for argv in (("predict", "had a"), ("generate", "had a", "-n", "8"), ("eval", str(CAT))):
        rc, out, err = cli(capsys, *argv, "--model", str(model))
        assert rc == 0 and err == "", err


CONFIG_CASES = [
    ("files-list", lambda c: c.update(files=["weights.npz"]), "field 'files' is ['weights.npz']; expected an object of file names"),
    ("files-digest", lambda c: c["files"].update({"vocab.json": 7}), "field 'files.vocab.json' is 7; expected a sha256 digest"),
    ("vocab-size-string", lambda c: c.update(vocab_size="112"), "field 'vocab_size' is '112'; expected a whole number of words"),
    ("units-string", lambda c: c["config"].update(units="512"), "field 'config.units' is '512'; expected a whole number or null"),
    ("lr-list", lambda c: c["config"].update(lr=[1]), "field 'config.lr' is [1]; expected a number or null"),
    ("keep-case-string", lambda c: c["config"].update(keep_case="yes"), "field 'config.keep_case' is 'yes'; expected true or false"),
    ("seed-negative", lambda c: c["config"].update(seed=-1), "field 'config.seed' is -1; expected a whole number from 0"),
    ("corpus-list", lambda c: c.update(corpus=[1]), "field 'corpus' is [1]; expected an object"),
    ("corpus-sha", lambda c: c["corpus"].update(sha256="../../etc"), "field 'corpus.sha256' is '../../etc'; expected a sha256 digest"),
    ("corpus-name", lambda c: c["corpus"].update(name={"x": 1}), "field 'corpus.name' is {'x': 1}; expected a string"),
]


@pytest.mark.parametrize("case, change, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_every_config_field_is_type_checked(model, repl, capsys, case, change, message):
    edit_config(model, change)
    refused(capsys, model, "config.json", message)
    refused_in_repl(repl, model, message)


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "words.json", "mixture.json"])
def test_deeply_nested_json_is_one_line(model, repl, capsys, name):
    deep = "[" * 100000 + "]" * 100000
    if name == "config.json":
        (model / name).write_text(deep)
    else:
        rewrite(model, name, deep)
    refused(capsys, model, name, "nests deeper than 64 levels")
    refused_in_repl(repl, model, name)


def test_metrics_of_wrong_types_keep_what_is_well_typed(model, repl):
    bad = {"format_version": 1, "accuracy": "high", "ceiling": 0.9, "epochs": [1], "stop_reason": HOSTILE,
           "history": {"loss": "down", "accuracy": [0.1, "x"], "val_loss": [2.0, 1.5]}, "versions": {"numpy": 3}}
    (model / "metrics.json").write_text(json.dumps(bad), encoding="utf-8")
    bundle = load_bundle(model)
    assert bundle.metrics == {"format_version": 1, "ceiling": 0.9, "stop_reason": visible(HOSTILE), "history": {"val_loss": [2.0, 1.5]}, "versions": {}}
    out = guarded(lambda: repl.run(f":load {model}")) + repl.run(":info") + repl.run(":history")
    assert "error" not in out and not RAW.search(out)
    (model / "metrics.json").write_text("[" * 100000)
    assert load_bundle(model).metrics == {}  # metrics only describe; a broken file counts as none


def test_a_refused_model_keeps_the_previous_one_through_the_session(model, repl):
    edit_json(model, "vocab.json", lambda v: v["tokens"].__setitem__(0, HOSTILE))
    before = repl.session.predictor.predict_text("had a", 3)
    refused_in_repl(repl, model, "vocab.json")
    assert repl.session.predictor.predict_text("had a", 3) == before
    assert "general" in repl.run("had a ")  # the old model still completes
