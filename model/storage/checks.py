"""What the files of a model directory must hold, checked as they are loaded.

Any model directory may come from someone else, so every value of ``config.json`` and every
weight is checked before anything uses it, and a bad one is one line naming the file, the
field and the value. ``metrics.json`` only describes the training: what is well-typed is kept
and the rest is dropped.
"""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Config
from model.errors import StoryError
from model.storage.origin import SHA256
from model.storage.untrusted import check_finite, parse_json, read_regular, visible

# No trained weight comes near this; with larger ones the forward pass would overflow float32.
MAX_WEIGHT = 1e6
MAX_INT = 2**32  # every whole number of a configuration is below this
FIX = "retrain or re-save the model"


def _shown(value: Any) -> str:
    return visible(repr(value))[:60]


def _bad(where: str, name: str, value: Any, expected: str) -> StoryError:
    return StoryError(f"{where}: field {name!r} is {_shown(value)}; expected {expected}; {FIX}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < MAX_INT


def _is_whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_info(info: Any, path: Path, files_known: tuple[str, ...]) -> dict:
    """``config.json`` of a model, every field of the right type (a one-line error otherwise)."""
    where = visible(path)
    if not isinstance(info, dict):
        raise StoryError(f"{where} is not a JSON object; it is not a story-repl model")
    files = info.get("files", {})
    if not isinstance(files, dict):
        raise _bad(where, "files", files, "an object of file names and sha256 digests")
    for name in files_known:
        digest = files.get(name)
        if digest is not None and not (isinstance(digest, str) and SHA256.fullmatch(digest)):
            raise _bad(where, f"files.{name}", digest, "a sha256 digest (64 hex digits)")
    size = info.get("vocab_size")
    if size is not None and not (_is_int(size) and size > 0):
        raise _bad(where, "vocab_size", size, "a whole number of words")
    if not isinstance(info.get("created", ""), str):
        raise _bad(where, "created", info["created"], "a date")
    _check_corpus(info.get("corpus", {}), where)
    raw = info.get("config")
    if not isinstance(raw, dict):
        raise StoryError(f"{where} has no valid configuration: field 'config' is {_shown(raw)}; {FIX}")
    _check_config(raw, where)
    return info


def _check_corpus(corpus: Any, where: str) -> None:
    if not isinstance(corpus, dict):
        raise _bad(where, "corpus", corpus, "an object (name, path, sha256, tokens)")
    for key in ("name", "path"):
        if not isinstance(corpus.get(key, ""), str) or len(corpus.get(key, "")) > 4096:
            raise _bad(where, f"corpus.{key}", corpus[key], "a string")
    sha = corpus.get("sha256", "")
    if not (sha == "" or isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise _bad(where, "corpus.sha256", sha, "a sha256 digest (64 hex digits)")
    tokens = corpus.get("tokens")
    if tokens is not None and not _is_int(tokens):
        raise _bad(where, "corpus.tokens", tokens, "a whole number")


def _check_config(raw: dict, where: str) -> None:
    """Every known field of the configuration of the type its annotation names."""
    tests = {"int": (_is_whole, "a whole number"), "float": (_is_number, "a number"),
             "bool": (lambda v: isinstance(v, bool), "true or false"), "str": (lambda v: isinstance(v, str), "a string")}
    for f in fields(Config):
        if f.name not in raw:
            continue
        value, kinds = raw[f.name], str(f.type).replace(" ", "").split("|")
        if value is None and "None" in kinds:
            continue
        test, expected = tests.get(kinds[0], (lambda v: True, ""))
        if not test(value):
            raise _bad(where, f"config.{f.name}", value, expected + (" or null" if "None" in kinds else ""))
    if "seed" in raw and not _is_int(raw["seed"]):
        raise _bad(where, "config.seed", raw["seed"], f"a whole number from 0 to {MAX_INT - 1}")


def config_of(info: dict, path: Path) -> Config:
    """The configuration ``config.json`` (checked by :func:`check_info`) holds."""
    where = visible(path)
    try:
        config = Config.from_dict(info["config"])
    except (StoryError, TypeError, ValueError) as e:
        raise StoryError(f"{where} has an invalid configuration: {visible(e)}") from None
    if config.context is None or config.embedding_dim is None or config.units is None:
        raise StoryError(f"{where} is incomplete (no context or embedding size); retrain the model")
    return config


def weight_arrays(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``weights.npz`` as float32, once each is known to be finite and within
    ±MAX_WEIGHT (read_npz has already refused every type but floats)."""
    check_finite(arrays.items(), path)
    out = {}
    for name, a in arrays.items():
        big = float(np.max(np.abs(a))) if a.size else 0.0
        if big > MAX_WEIGHT:
            raise StoryError(
                f"{visible(path)}: array {visible(name)!r} holds {big:.3g}, beyond the ±{MAX_WEIGHT:g} a trained weight stays within; {FIX}"
            )
        out[name] = a.astype(np.float32)
    return out


_NUMBERS = ("accuracy", "ceiling", "train_seconds", "val_loss")
_COUNTS = ("format_version", "epochs", "planned_epochs", "replicas")


def read_metrics(path: Path, max_bytes: int) -> dict[str, Any]:
    """What metrics.json says of the training, well-typed (it is only shown, so a file that
    cannot be parsed counts as none; one that is not a regular file is refused)."""
    data = read_regular(path, max_bytes, missing_ok=True)
    try:
        return clean_metrics(parse_json(data, path)) if data is not None else {}
    except StoryError:
        return {}


def clean_metrics(raw: Any) -> dict[str, Any]:
    """What ``metrics.json`` holds of the right types (strings made visible); the rest dropped."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _NUMBERS and _is_number(value) or key in _COUNTS and _is_int(value):
            out[key] = value
        elif key in ("interrupted", "auto_resume") and isinstance(value, bool):
            out[key] = value
        elif key == "stop_reason" and isinstance(value, str):
            out[key] = visible(value[:500])
        elif key == "history" and isinstance(value, dict):
            out[key] = {
                visible(k)[:100]: list(v) for k, v in value.items() if isinstance(v, list) and all(_is_number(x) for x in v)
            }
        elif key == "versions" and isinstance(value, dict):
            out[key] = {visible(k)[:100]: visible(v)[:100] for k, v in value.items() if isinstance(v, str)}
    return out
