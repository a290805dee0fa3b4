"""The mixture's own files are checked before use: ``mixture.json``, ``ngram.npz``, ``words.json``
and the partner weights kept under ``$STORY_REPL_HOME/partners``.

A model directory may be hand-edited or hostile, and its checksums in config.json recomputed,
so every case here rewrites a file of a real bundle *and* its checksum. Each bad file is one
line naming the file, the field and the value; the model loaded before stays in use; a kept
partner file that is not valid is refitted and rewritten.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from model.errors import StoryError
from model.storage.bundle import load_bundle
from repl.cli import main

from helpers import CAT, Repl, error_line, random_bundle


# ---- helpers ------------------------------------------------------------------------------
@pytest.fixture
def model(model_copy) -> Path:
    return model_copy


def rewrite(model: Path, name: str, data: bytes | str) -> None:
    """Replace one file of a bundle and its checksum in config.json, as anyone can."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    (model / name).write_bytes(raw)
    info = json.loads((model / "config.json").read_text(encoding="utf-8"))
    info["files"][name] = hashlib.sha256(raw).hexdigest()
    (model / "config.json").write_text(json.dumps(info), encoding="utf-8")


def predict_error(model: Path, capsys) -> str:
    """The one stderr line of ``story-repl predict`` on ``model``, which must fail cleanly."""
    capsys.readouterr()
    rc = main(["predict", "had a", "--model", str(model)])
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert rc == 2 and len(lines) == 1, cap.err
    assert "Traceback" not in cap.err and "\x1b" not in cap.err + cap.out
    assert lines[0].startswith("story-repl: error: ")
    return lines[0]


def npz(arrays: dict[str, np.ndarray], raw: dict[str, bytes] | None = None) -> bytes:
    """An .npz file of ``arrays``, with members in ``raw`` written byte for byte."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    if not raw:
        return buf.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(out, "w") as dst:
        for member in src.infolist():
            name = member.filename[:-4]
            dst.writestr(member.filename, raw[name] if name in raw else src.read(member))
    return out.getvalue()


def huge_header(shape: tuple[int, ...]) -> bytes:
    """An .npy member that declares ``shape`` of float64 but holds 16 bytes."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return out.getvalue() + b"\0" * 16


def saved_arrays(model: Path) -> dict[str, np.ndarray]:
    with np.load(model / "ngram.npz", allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files}


# ---- mixture.json -------------------------------------------------------------------------
def _set(path: str, value):
    """A mutation that sets d[path...] (keys and indices separated by '/') to ``value``."""

    def mutate(d):
        *head, last = [int(p) if p.isdigit() else p for p in path.split("/")]
        for p in head:
            d = d[p]
        d[last] = value

    return mutate


def _pop(path: str):
    """A mutation that drops the last item of the list at ``path``."""

    def mutate(d):
        for p in [int(p) if p.isdigit() else p for p in path.split("/")]:
            d = d[p]
        d.pop()

    return mutate


def _push(path: str, value):
    """A mutation that appends ``value`` to the list at ``path``."""

    def mutate(d):
        for p in [int(p) if p.isdigit() else p for p in path.split("/")]:
            d = d[p]
        d.append(value)

    return mutate


MIXTURE_CASES = [
    ("nan-as-text", _set("by_bucket/0/1", "NaN"), "by_bucket[0][1] is 'NaN'; expected a number from 0 to 1e+06"),
    ("nan-literal", _set("by_bucket/0/1", float("nan")), "mixture.json is not valid JSON (NaN is not a number JSON allows)"),
    ("infinity-literal", _set("overall/2", float("-inf")), "(-Infinity is not a number JSON allows)"),
    ("overflowing", _set("by_bucket/3/0", "OVERFLOW"), "by_bucket[3][0] is inf; expected a number"),
    ("negative", _set("by_bucket/0/1", -0.5), "by_bucket[0][1] is -0.5; expected a number from 0 to 1e+06"),
    ("huge", _set("overall/0", 1e300), "overall[0] is 1e+300; expected a number from 0 to 1e+06"),
    ("zero-row", _set("by_bucket/2", [0, 0, 0, 0]), "by_bucket[2] is [0.0, 0.0, 0.0, 0.0]; expected at least one weight above 0"),
    ("theta-nan", _set("components/ncache/theta", "nan"), "components['ncache']['theta'] is 'nan'; expected a number from 1e-06 to 100"),
    ("theta-huge", _set("components/ncache/theta", 1e308), "components['ncache']['theta'] is 1e+308; expected a number"),
    ("theta-negative", _set("components/ncache/theta", -1e308), "components['ncache']['theta'] is -1e+308"),
    ("theta-zero", _set("components/ncache/theta", 0), "components['ncache']['theta'] is 0; expected"),
    ("param-not-number", _set("components/ncache/size", [1]), "components['ncache']['size'] is [1]; expected a number"),
    ("unknown-component", _set("names/3", "bogus"), "names holds 'bogus', unknown or repeated; components are lstm, ngram"),
    ("repeated-component", _set("names/3", "lstm"), "names holds 'lstm', unknown or repeated"),
    ("unknown-parameters", _set("components/bogus", {"theta": 1}), "components['bogus'] is {'theta': 1}; expected parameters"),
    ("row-too-short", _pop("by_bucket/1"), "by_bucket[1] holds 3 weights; expected 4, one per name"),
    ("row-too-long", _push("by_bucket/1", 0.5), "by_bucket[1] holds 5 weights; expected 4, one per name"),
    ("overall-too-short", _pop("overall"), "overall holds 3 weights; expected 4"),
    ("newer-format", _set("format_version", 99), "format_version is 99, newer than this story-repl (2); upgrade story-repl"),
    ("format-as-text", _set("format_version", "2"), "format_version is '2'; expected a whole number"),
    ("names-not-a-list", _set("names", "lstm"), "names is 'lstm'; expected a list of component names"),
    ("rows-not-a-list", _set("by_bucket", {"0": [1, 1, 1, 1]}), "by_bucket is {'0': [1, 1, 1, 1]}; expected a list"),
    ("row-not-a-list", _set("by_bucket/0", 1.0), "by_bucket[0] holds 1.0; expected 4, one per name"),
    ("overall-null", _set("overall", None), "overall holds None; expected 4"),
    ("weight-bool", _set("overall/1", True), "overall[1] is True; expected a number"),
    ("positions-text", _set("positions", "many"), "positions is 'many'; expected a whole number"),
    ("perplexity-list", _set("perplexity", [1]), "perplexity is [1]; expected a number for each of its names"),
    ("perplexity-nan", _set("perplexity/lstm", "NaN"), "perplexity['lstm'] is 'NaN'; expected a number"),
    ("fitted-on-escape", _set("fitted_on", "\x1b]0;owned\x07"), "fitted_on is '\\x1b]0;owned\\x07'; expected a short line"),
    ("components-list", _set("components", [1]), "components is [1]; expected an object by component name"),
    ("params-not-object", _set("components/ncache", 0.3), "components['ncache'] is 0.3; expected parameters"),
]


def _mixture_text(model: Path, mutate) -> str:
    d = json.loads((model / "mixture.json").read_text(encoding="utf-8"))
    mutate(d)
    return json.dumps(d).replace('"OVERFLOW"', "1e999")


@pytest.mark.parametrize("mutate,message", [c[1:] for c in MIXTURE_CASES], ids=[c[0] for c in MIXTURE_CASES])
def test_a_bad_mixture_json_is_one_line_naming_the_field(model, capsys, mutate, message):
    rewrite(model, "mixture.json", _mixture_text(model, mutate))
    line = predict_error(model, capsys)
    assert str(model / "mixture.json") in line and message in line
    if "newer" not in message:
        assert line.endswith("retrain the model")


def test_a_format_1_mixture_with_a_bad_theta_is_refused(model, capsys):
    d = json.loads((model / "mixture.json").read_text(encoding="utf-8"))
    d = {k: v for k, v in d.items() if k != "components"}
    d.update(format_version=1, theta="NaN")
    rewrite(model, "mixture.json", json.dumps(d))
    assert "mixture.json: theta is 'NaN'; expected a number from 1e-06 to 100" in predict_error(model, capsys)


def test_a_bad_mixture_json_in_the_repl_keeps_the_model_in_use(default_bundle, model):
    repl = Repl(default_bundle)
    before, predictor = repl.session.bundle, repl.session.predictor
    rewrite(model, "mixture.json", _mixture_text(model, _pop("by_bucket/1")))
    line = error_line(repl.run(f":load {model}"))
    assert "mixture.json: by_bucket[1] holds 3 weights; expected 4, one per name" in line
    assert repl.session.bundle is before and repl.session.predictor is predictor
    for text in ("had a general", "the mice had a", "they"):
        out = repl.run(text)
        assert "next word after" in out and "error" not in out


def test_extreme_but_valid_values_give_no_numpy_warning(model, capsys):
    d = json.loads((model / "mixture.json").read_text(encoding="utf-8"))
    d["by_bucket"] = [[1e6, 1e6, 1e6, 1e6], [5e-324, 0, 0, 0], [0, 0, 1e6, 5e-324], [0, 0, 0, 1], [0, 1, 0, 0]]
    d["overall"] = [0, 0, 5e-324, 0]
    d["components"]["ncache"]["theta"] = 100
    rewrite(model, "mixture.json", json.dumps(d))
    arrays = saved_arrays(model)
    arrays["l2_gamma"][:] = 5e-324
    arrays["base"] = np.maximum(arrays["base"] * 1e-300, 5e-324)
    rewrite(model, "ngram.npz", npz(arrays))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        capsys.readouterr()
        assert main(["predict", "had a", "--model", str(model)]) == 0
        cap = capsys.readouterr()
        assert cap.err == "" and "%" in cap.out
        repl = Repl(load_bundle(model))
        for text in ("the mice had a general council", "the mice had a", ":components lstm ncache", "had a"):
            assert "error" not in repl.run(text)


# ---- ngram.npz ----------------------------------------------------------------------------
def _edit(name: str, fn):
    def mutate(a):
        a[name] = fn(a[name].copy())

    return mutate


def _at(i, value):
    def fn(x):
        x[i] = value
        return x

    return fn


NGRAM_CASES = [
    ("base-nan", _edit("base", _at(3, np.nan)), "array 'base' holds nan at index 3; expected a probability above 0"),
    ("base-negative", _edit("base", _at(3, -0.25)), "array 'base' holds -0.25 at index 3"),
    ("base-zero", _edit("base", _at(0, 0.0)), "array 'base' holds 0.0 at index 0"),
    ("gamma-nan", _edit("l2_gamma", _at(0, np.nan)), "array 'l2_gamma' holds nan at index 0; expected a weight in (0, 1]"),
    ("weight-infinite", _edit("l1_weight", _at(1, np.inf)), "array 'l1_weight' holds inf at index 1; expected a probability"),
    ("word-too-large", _edit("l3_words", _at(0, 10**6)), "array 'l3_words' holds 1000000 at index 0; expected a word id below"),
    ("word-negative", _edit("l3_words", _at(2, -1)), "array 'l3_words' holds -1 at index 2"),
    ("words-unsorted", _edit("l1_words", lambda x: x[::-1].copy()), "array 'l1_words' is not sorted within each context"),
    ("start-huge", _edit("l2_start", _at(-1, 2**40)), "array 'l2_start' holds [0, "),
    ("start-negative", _edit("l2_start", _at(1, -7)), "array 'l2_start' holds [0, -7, "),
    ("start-too-long", _edit("l2_start", lambda x: np.append(x, x[-1])), "array 'l2_start' is int64 of shape"),
    ("keys-unsorted", _edit("keys2", lambda x: x[::-1].copy()), "array 'keys2' is not sorted"),
    ("key-out-of-range", _edit("keys1", _at(-1, 2**40)), "array 'keys1' holds 1099511627776"),
    ("count-zero", _edit("l4_counts", _at(0, 0)), "array 'l4_counts' holds 0 at index 0; expected a count of at least 1"),
    ("stats-infinite", _edit("l2_stats", _at(3, np.inf)), "array 'l2_stats' holds inf at index 3"),
    ("discount-nan", _edit("l5_stats", _at(0, np.nan)), "array 'l5_stats' holds nan at index 0"),
    ("order-huge", _edit("meta", _at(0, 10**9)), "array 'meta' holds order 1000000000"),
    ("base-as-integers", _edit("base", lambda x: x.astype(np.int64)), "array 'base' is int64 of shape"),
    ("base-2d", _edit("base", lambda x: x.reshape(1, -1)), "array 'base' is float64 of shape (1, "),
    ("base-bool", _edit("base", lambda x: x > 0), "array 'base' has type bool, which a story-repl model never holds"),
    ("level-missing", lambda a: a.pop("l3_gamma"), "array 'l3_gamma' is missing"),
    ("meta-uint-huge", _edit("meta", lambda x: np.asarray([2**64 - 1, 5], np.uint64)), "array 'meta' holds 18446744073709551615"),
]


@pytest.mark.parametrize("mutate,message", [c[1:] for c in NGRAM_CASES], ids=[c[0] for c in NGRAM_CASES])
def test_a_bad_ngram_npz_is_one_line_naming_the_array(model, capsys, mutate, message):
    arrays = saved_arrays(model)
    mutate(arrays)
    rewrite(model, "ngram.npz", npz(arrays))
    line = predict_error(model, capsys)
    assert f"{model / 'ngram.npz'}: {message}" in line or (str(model / "ngram.npz") in line and message in line)
    assert line.endswith("retrain the model")


def test_a_huge_declared_shape_allocates_nothing(model, capsys):
    rewrite(model, "ngram.npz", npz(saved_arrays(model), raw={"base": huge_header((10**12,))}))
    line = predict_error(model, capsys)
    assert f"{model / 'ngram.npz'}: array 'base' declares shape (1000000000000,) but the file holds 16 bytes of it" in line


def test_a_damaged_array_header_is_one_line(model, capsys):
    arrays = saved_arrays(model)
    out = io.BytesIO()
    np.lib.format.write_array(out, arrays["base"])
    damaged = out.getvalue().replace(b"{'descr'", b"{#descr'", 1)  # numpy's header parser lets a TokenError through
    rewrite(model, "ngram.npz", npz(arrays, raw={"base": damaged}))
    line = predict_error(model, capsys)
    assert f"{model / 'ngram.npz'}: array 'base' is truncated or corrupt (TokenError)" in line


@pytest.mark.parametrize("cut", [0, 100, 0.5, -1])
def test_a_truncated_ngram_npz_says_so(model, capsys, cut):
    data = (model / "ngram.npz").read_bytes()
    rewrite(model, "ngram.npz", data[: int(len(data) * cut) if isinstance(cut, float) else cut])
    line = predict_error(model, capsys)
    assert str(model / "ngram.npz") in line and "truncated" in line and "retrain the model" in line


def test_an_ngram_of_another_vocabulary_size_is_refused(model, capsys):
    arrays = saved_arrays(model)
    v = int(arrays["meta"][1])
    arrays["meta"][1] = v + 1
    arrays["base"] = np.append(arrays["base"], 1e-6)
    rewrite(model, "ngram.npz", npz(arrays))
    line = predict_error(model, capsys)
    assert f"ngram.npz: array 'meta' says {v + 1} words but words.json has {v}" in line


# ---- words.json ---------------------------------------------------------------------------
WORDS_CASES = [
    ("malformed", lambda d: d["counts"].pop(), "words.json is malformed (tokens and counts disagree)"),
    ("newer", lambda d: d.update(format_version=99), "words.json has format version 99, newer than this story-repl"),
    ("duplicates", lambda d: d["tokens"].__setitem__(1, d["tokens"][0]), "vocabulary has duplicate tokens"),
    ("not-json", "{", "words.json is not valid JSON"),
    ("not-utf8", b"\xff\xfe{", "words.json is unreadable: not UTF-8 text"),
    ("escape-token", lambda d: d["tokens"].__setitem__(0, "\x1b[2J"), "words.json: token 0 is '\\x1b[2J'"),
]


@pytest.mark.parametrize("change,message", [c[1:] for c in WORDS_CASES], ids=[c[0] for c in WORDS_CASES])
def test_a_bad_words_json_names_words_json(model, capsys, change, message):
    if callable(change):
        d = json.loads((model / "words.json").read_text(encoding="utf-8"))
        change(d)
        change = json.dumps(d)
    rewrite(model, "words.json", change)
    line = predict_error(model, capsys)
    assert str(model / "words.json") in line and message in line and "vocab.json" not in line


# ---- the kept partner weights -------------------------------------------------------------
@pytest.fixture
def partner(model, tmp_path):
    """(model, a stream network of the same text and split as its partner): random weights."""
    info = json.loads((model / "config.json").read_text(encoding="utf-8"))
    other = random_bundle(tmp_path / "partner", CAT, arch="stream", units=16, embedding_dim=8, valid_fraction=info["config"]["valid_fraction"])
    return model, other


def _with_partner(model: Path, other: Path):
    from model.prediction.predictor import Predictor

    return Predictor(load_bundle(model), partner=load_bundle(other))


PARTNER_CASES = [
    ("nan-literal", lambda t: re.sub(r"\[\[[0-9.e-]+", "[[NaN", t, count=1)),
    ("nan-as-text", lambda t: _json_edit(t, _set("by_bucket/0/0", "NaN"))),
    ("negative", lambda t: _json_edit(t, _set("overall/0", -1.0))),
    ("theta-huge", lambda t: _json_edit(t, _set("components/ncache/theta", 1e308))),
    ("row-too-short", lambda t: _json_edit(t, _pop("by_bucket/0"))),
    ("not-json", lambda t: "{not json"),
]


def _json_edit(text: str, mutate) -> str:
    d = json.loads(text)
    mutate(d)
    return json.dumps(d)


def test_kept_partner_weights_that_are_not_valid_are_refitted_and_rewritten(partner, _private_home):
    from model.prediction.weights import from_saved
    from model.storage.partners import read_weights

    model, other = partner
    first = _with_partner(model, other).mixture.weights
    kept = list((_private_home / "partners").glob("*.json"))
    assert len(kept) == 1
    good = kept[0].read_text(encoding="utf-8")
    for case, change in PARTNER_CASES:
        kept[0].write_text(change(good), encoding="utf-8")
        assert read_weights(kept[0], first.names) is None, case
        again = _with_partner(model, other).mixture.weights
        assert again.to_dict() == first.to_dict(), case
        rewritten = json.loads(kept[0].read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(c))
        assert from_saved(rewritten, kept[0])[0].to_dict() == first.to_dict(), case
    assert sorted(p.name for p in kept[0].parent.iterdir()) == [kept[0].name]


def test_a_directory_in_place_of_the_kept_weights_leaves_no_temporary_file(partner, _private_home):
    from model.storage.partners import partner_weights_path

    model, other = partner
    kept = partner_weights_path(load_bundle(model), load_bundle(other))
    kept.mkdir(parents=True)
    for _ in range(2):
        pred = _with_partner(model, other)
        assert pred.mixture.weights.names[-1] == "lstm2"
        assert [p.name for p in kept.parent.iterdir()] == [kept.name] and kept.is_dir()
    ids, _ = pred.encode(pred.tokenize("the mice had a"))
    assert np.isfinite(pred.distribution(ids)).all()


def test_from_saved_refuses_what_is_not_an_object():
    from model.prediction.weights import from_saved

    for value in ([], "x", 3, None):
        with pytest.raises(StoryError, match=r"^m\.json holds \w+, not a JSON object; retrain the model$"):
            from_saved(value, "m.json")
