"""A saved model: one directory, written to a temporary sibling, synced and swapped in by one rename.

    model.keras     Keras weights, architecture and optimizer state (for resuming training)
    weights.npz     the same weights as plain arrays, for the TensorFlow-free predictor
    vocab.json      the network's vocabulary, with a format version
    config.json     configuration, corpus name and sha256, format version, and the sha256 of
                    model.keras, weights.npz and vocab.json (written last)
    metrics.json    accuracy, ceiling, per-epoch history, library versions
    words.json, ngram.npz, mixture.json    the mixture's full vocabulary, n-gram and weights
    casing.json     how each word of words.json is written where it differs (optional)
                    (model/prediction/build.py); rebuilt in memory when missing, from the
                    training text where model/storage/origin.py finds it

A model directory may come from someone else: loading reads its regular files only, checks
every one (model/storage/checks.py), never runs code from it and never writes into it.
"""
from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import io
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.config import Config
from model.errors import StoryError
from model.storage.checks import check_info, config_of, read_metrics, weight_arrays
from model.storage.files import exchange_dirs, file_digest, fsync_dir, fsync_file, write_synced
from model.storage.untrusted import MAX_JSON_BYTES, check_plain, parse_json, read_npz, read_regular, visible
from model.text.vocab import Vocab

FORMAT_VERSION = 1
MAX_ARRAY_BYTES = 16 * 2**30  # no array file of a model is this large
EXTRAS = ("words.json", "ngram.npz", "mixture.json", "casing.json")
FILES = ("model.keras", "weights.npz", "vocab.json", "config.json", "metrics.json") + EXTRAS
ARCH_KEYS = {
    "lstm": ("lstm",),
    "stacked": ("lstm_1", "lstm_2"),
    "bilstm": ("forward", "backward"),
    "stream": ("lstm_1", "lstm_2"),
}


@dataclass
class Bundle:
    path: Path
    config: Config
    vocab: Vocab
    weights: dict[str, np.ndarray]
    info: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    given_text: str | None = None  # a text the user offered as the training text (used only if its sha256 matches)

    @property
    def corpus_sha256(self) -> str:
        return str(self.info.get("corpus", {}).get("sha256", ""))

    @property
    def corpus_name(self) -> str:
        """The recorded name of the training text, with any control character written out."""
        return visible(self.info.get("corpus", {}).get("name") or "?")

    @property
    def corpus_path(self) -> str:
        """The recorded path of the training text (shown visibly): a hint, never opened on its own."""
        return visible(self.info.get("corpus", {}).get("path") or "")

    def use_text(self, spec: str) -> Path:
        """Take ``spec`` (the user's ``--corpus``) as this model's training text, once its sha256
        is the recorded one; a one-line StoryError otherwise (:mod:`model.storage.origin`)."""
        from model.storage.origin import check_given

        path = check_given(self, spec)
        self.given_text = str(path)
        return path

    def text_spec(self) -> str | None:
        """A corpus to retrain this model's text from, found without opening what it names."""
        from model.storage.origin import trusted_spec

        return trusted_spec(self)

    def training_text(self) -> Path | None:
        """The file the training text may be read from, checked by sha256; None when none is at hand."""
        from model.storage.origin import text_path

        return text_path(self)

    def training_corpus(self, encoding: str = "utf-8", need: str = ""):
        """The text this model was trained on, read again (with its case rule) from where
        :meth:`training_text` finds it and checked against the sha256 it recorded, so what is
        measured on it is measured on that very text. A one-line StoryError saying which text is
        needed (``need``: what for) when none is at hand."""
        from model.storage.origin import missing_text
        from model.text.corpus import read_corpus

        path = self.training_text()
        if path is None:
            raise missing_text(self, need)
        try:
            corpus = read_corpus(path, encoding=encoding, keep_case=bool(self.config.keep_case))
        except StoryError as e:
            raise StoryError(f"cannot read the model's training text: {e}") from None
        if corpus.sha256 != self.corpus_sha256:
            raise StoryError(f"{visible(path)} changed while it was read (sha256 differs); try again")
        return corpus

    def extra(self, name: str) -> bytes | None:
        """The bytes of an optional component file (a regular file, checked against its
        checksum), or None when it is missing."""
        f = self.path / name
        data = read_regular(f, MAX_ARRAY_BYTES, missing_ok=True)
        if data is not None:
            _check_sum(f, data, self.info.get("files") or {})
        return data

    def parameter_count(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def keras_model(self):
        """The Keras model with its optimizer state (imports TensorFlow)."""
        from model.training import network  # noqa: F401  (imports TensorFlow quietly first)

        import keras

        keras_file = self.path / "model.keras"
        if not check_plain(keras_file):
            raise StoryError(
                f"{self.path} has no model.keras: it can predict but not resume training; train a new model instead"
            )
        expected = (self.info.get("files") or {}).get("model.keras")
        if expected and file_digest(keras_file) != expected:
            raise StoryError(f"{keras_file} does not match the rest of the bundle (checksum differs); retrain the model")
        try:
            return keras.saving.load_model(keras_file, compile=True, safe_mode=True)
        except Exception as e:  # noqa: BLE001 - any failure here is a broken file
            if "safe_mode" in str(e) or "arbitrary code" in str(e):
                raise StoryError(
                    f"{keras_file} contains Python code (e.g. a Lambda layer); refusing to run it: retrain the model"
                ) from None
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise StoryError(f"cannot load {keras_file}: {first}") from None


# ---- versions ---------------------------------------------------------------------------
def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "prompt_toolkit", "rich"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


# ---- saving -----------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _leftovers(target: Path, kind: str) -> list[tuple[Path, int]]:
    """(path, pid) of ``.NAME.tmp-PID-*`` / ``.NAME.old-PID`` siblings left by a save that died."""
    out = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return out
    head = f".{target.name}.{kind}-"
    for name in names:
        if not name.startswith(head):
            continue
        pid_text = name[len(head):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            out.append((target.parent / name, int(pid_text)))
    return out


def recover(target: Path) -> None:
    """Finish what a killed save left behind: put back an old bundle moved aside (only where
    the rename fallback was used, so ``target`` is missing) and remove dead temporary copies."""
    if not target.exists():
        for old, _pid in _leftovers(target, "old"):
            try:
                os.rename(old, target)
                break
            except OSError:
                pass
    for path, _pid in _leftovers(target, "tmp") + _leftovers(target, "old"):
        shutil.rmtree(path, ignore_errors=True)


def _swap_into_place(tmp: Path, target: Path) -> None:
    try:
        os.rename(tmp, target)  # atomic when target does not exist (or is an empty dir)
        return
    except OSError:
        if not target.exists():
            raise
    if exchange_dirs(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old bundle
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _is_replaceable(target: Path) -> bool:
    """True if ``target`` is absent, empty, or holds nothing but bundle files (a bundle, even a broken one).

    Raises OSError where ``target`` cannot be looked at (a name too long, a file on the way)."""
    try:
        names = os.listdir(target)
    except FileNotFoundError:
        return True
    return set(names) <= set(FILES)


def _shown(path: Path, limit: int = 200) -> str:
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit - 60]}…{text[-59:]}"


def _save_error(target: Path, e: OSError) -> StoryError:
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space or save elsewhere"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a directory you can write to"
    else:
        hint = "choose another directory"
    return StoryError(f"cannot save to {_shown(target)}: {reason}; {hint} (any previous model there is untouched)")


def check_target(target: str | os.PathLike) -> Path:
    """The absolute path a bundle may be saved to; a one-line error if it may not (checked before training)."""
    target = Path(os.path.expanduser(str(target))).absolute()
    try:
        if target.exists() and not target.is_dir():
            raise StoryError(f"cannot save to {_shown(target)}: it is a file, not a directory; choose a new directory")
        replaceable = _is_replaceable(target)
    except (OSError, ValueError) as e:
        raise _save_error(target, e if isinstance(e, OSError) else OSError(errno.EINVAL, str(e))) from None
    if not replaceable:
        raise StoryError(
            f"cannot save to {_shown(target)}: it is a directory that is not a story-repl model; choose a new or empty directory"
        )
    return target


def save_bundle(
    target: str | os.PathLike,
    *,
    model: Any,
    config: Config,
    vocab: Vocab,
    weights: dict[str, np.ndarray],
    corpus: dict[str, Any],
    metrics: dict[str, Any],
    extras: dict[str, bytes] | None = None,
) -> Path:
    """Write a bundle to ``target`` atomically; the previous bundle there survives any failure.

    ``target`` must be new, empty, or a bundle: any other directory is refused, never replaced.
    """
    target = check_target(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        recover(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    except OSError as e:
        raise _save_error(target, e) from None
    try:
        files: dict[str, str] = {}
        if model is not None:
            model.save(tmp / "model.keras")
            fsync_file(tmp / "model.keras")
            files["model.keras"] = file_digest(tmp / "model.keras")
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v, np.float32) for k, v in weights.items()})
        data = buf.getvalue()
        write_synced(tmp / "weights.npz", data)
        files["weights.npz"] = hashlib.sha256(data).hexdigest()
        data = vocab.to_json().encode("utf-8")
        write_synced(tmp / "vocab.json", data)
        files["vocab.json"] = hashlib.sha256(data).hexdigest()
        for name, data in (extras or {}).items():
            if name not in EXTRAS:
                raise ValueError(f"not a bundle file: {name}")
            write_synced(tmp / name, data)
            files[name] = hashlib.sha256(data).hexdigest()
        info = {
            "format_version": FORMAT_VERSION,
            "config": config.to_dict(),
            "vocab_size": len(vocab),
            "corpus": corpus,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files,
        }
        full_metrics = {"format_version": FORMAT_VERSION, **metrics, "versions": library_versions()}
        write_synced(tmp / "metrics.json", json.dumps(full_metrics, indent=2, ensure_ascii=False).encode("utf-8"))
        # config.json last: a directory without it is never taken for a model.
        write_synced(tmp / "config.json", json.dumps(info, indent=2, ensure_ascii=False).encode("utf-8"))
        fsync_dir(tmp)
        _swap_into_place(tmp, target)
        fsync_dir(target.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise _save_error(target, e) from None
        raise
    return target


# ---- loading ----------------------------------------------------------------------------
def _read_versioned(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """A JSON object with a format version this story-repl reads, from the regular file ``path``."""
    data = read_regular(path, max_bytes, missing_ok=True)
    if data is None:
        raise StoryError(f"{visible(path.parent)} is not a complete model: {path.name} is missing; retrain or re-save the model")
    data = parse_json(data, path)
    if not isinstance(data, dict):
        raise StoryError(f"{visible(path)} is malformed; retrain or re-save the model")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise StoryError(f"{visible(path)} has no format version; it is not a story-repl model")
    if version > FORMAT_VERSION:
        raise StoryError(f"{visible(path)} has format version {version}, newer than this story-repl ({FORMAT_VERSION}); upgrade story-repl")
    return data


def expected_shapes(config: Config, vocab_size: int) -> dict[str, tuple[int, ...]]:
    """The shape of every weight array of the network ``config`` describes for ``vocab_size`` words."""
    e, u = int(config.embedding_dim), int(config.units)
    shapes: dict[str, tuple[int, ...]] = {"embedding": (vocab_size + 1, e)}
    inputs = {"lstm": (e,), "stacked": (e, u), "bilstm": (e, e), "stream": (e, u)}[config.arch]
    for p, d in zip(ARCH_KEYS[config.arch], inputs):
        shapes.update({f"{p}/kernel": (d, 4 * u), f"{p}/recurrent": (u, 4 * u), f"{p}/bias": (4 * u,)})
    hidden = 2 * u if config.arch == "bilstm" else u
    shapes.update({"logits/kernel": (hidden, vocab_size), "logits/bias": (vocab_size,)})
    if config.arch == "stream" and config.tie_weights:  # the output kernel is the embedding transposed, not stored
        del shapes["logits/kernel"]
    return shapes


def check_weights(config: Config, vocab_size: int, weights: dict[str, np.ndarray], where: Path) -> None:
    """Raise if the arrays do not form the network ``config`` describes for ``vocab_size`` words."""
    shapes = expected_shapes(config, vocab_size)
    missing = [k for k in shapes if k not in weights]
    if missing:
        raise StoryError(f"{where / 'weights.npz'} does not match its config ({config.arch}): array {missing[0]!r} is missing; retrain the model")
    out = weights["logits/bias"]
    if out.ndim == 1 and out.shape[-1] != vocab_size:
        raise StoryError(
            f"{where}: vocab.json has {vocab_size} words but the weights are for {out.shape[-1]}; "
            f"the bundle is inconsistent: retrain or re-save the model"
        )
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise StoryError(
                f"{where / 'weights.npz'}: array {name!r} has shape {tuple(weights[name].shape)}, not {shape} as its config and vocabulary "
                f"need; the bundle is inconsistent: retrain or re-save the model"
            )


def _check_sum(path: Path, data: bytes, files: dict) -> None:
    expected = files.get(path.name)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise StoryError(
            f"{visible(path)} does not match the bundle it is in (checksum differs); retrain or re-save the model"
        )


def _model_dir(path: str | os.PathLike) -> Path:
    """The absolute path of a model directory, every file of it a regular one (or missing)."""
    path = Path(os.path.expanduser(str(path))).absolute()
    try:
        if not path.exists():
            recover(path)  # a save killed half-way through the rename fallback
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        reason = getattr(e, "strerror", None) or str(e)
        raise StoryError(f"cannot open a model at {_shown(path)}: {reason}; give a directory saved with :save or story-repl train --out") from None
    if not exists:
        raise StoryError(f"no model at {_shown(path)}; give a directory saved with :save or story-repl train --out")
    if not is_dir:
        raise StoryError(f"{_shown(path)} is not a model directory; give a directory saved with :save or story-repl train --out")
    for name in FILES:
        check_plain(path / name)
    return path


def _read_part(path: Path, files: dict, max_bytes: int) -> bytes:
    """The bytes of a file every model has, checked against its checksum."""
    data = read_regular(path, max_bytes, missing_ok=True)
    if data is None:
        raise StoryError(f"{visible(path.parent)} is not a complete model: {path.name} is missing; retrain or re-save the model")
    _check_sum(path, data, files)
    return data


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load a bundle for inference (numpy only). Every problem is one StoryError line.

    The directory may come from anyone: only its regular files are read, each bounded and
    checked (checksums, JSON field types, array types, sizes, shapes and values), nothing in it
    is executed (JSON, and plain arrays read from their headers) and nothing is written.
    """
    path = _model_dir(path)
    info = check_info(_read_versioned(path / "config.json"), path / "config.json", FILES)
    files = info.get("files") or {}
    vocab_file = path / "vocab.json"
    vocab = Vocab.from_json(_read_part(vocab_file, files, MAX_JSON_BYTES), source=visible(vocab_file))
    config = config_of(info, path / "config.json")
    weights_file = path / "weights.npz"
    arrays = read_npz(_read_part(weights_file, files, MAX_ARRAY_BYTES), weights_file, kinds="f")
    weights = weight_arrays(arrays, weights_file)
    check_weights(config, len(vocab), weights, path)
    if info.get("vocab_size") not in (None, len(vocab)):
        raise StoryError(
            f"{visible(path)}: config.json says {info.get('vocab_size')} words but vocab.json has {len(vocab)}; retrain or re-save the model"
        )
    return Bundle(path=path, config=config, vocab=vocab, weights=weights, info=info, metrics=read_metrics(path / "metrics.json", MAX_JSON_BYTES))


def save_result(result: Any, target: str | os.PathLike) -> Path:
    """Save a :class:`model.training.train.TrainResult` as a bundle."""
    from model.training.network import export_weights

    return save_bundle(
        target,
        model=result.model,
        config=result.config,
        vocab=result.vocab,
        weights=export_weights(result.model, result.config),
        corpus={"name": result.corpus_name, "path": result.corpus_path, "sha256": result.corpus_sha256, "tokens": result.n_tokens},
        metrics=result.metrics(),
        extras=getattr(result, "extras", None) or None,
    )


def copy_bundle(bundle: Bundle, target: str | os.PathLike, extras: dict[str, bytes] | None = None, force: bool = False) -> Path:
    """Save an already loaded bundle elsewhere (atomically), keeping its Keras file."""
    target = Path(os.path.expanduser(str(target))).absolute()
    if target == bundle.path and not force:
        return target
    src_keras = bundle.path / "model.keras"
    has_keras = check_plain(src_keras)

    class _Copy:
        def save(self, dest):
            shutil.copyfile(src_keras, dest)

    metrics = {k: v for k, v in bundle.metrics.items() if k not in ("format_version", "versions")}
    return save_bundle(
        target,
        model=_Copy() if has_keras else None,
        config=bundle.config,
        vocab=bundle.vocab,
        weights=bundle.weights,
        corpus=dict(bundle.info.get("corpus") or {}),
        metrics=metrics,
        extras=extras if extras is not None else {name: data for name in EXTRAS if (data := bundle.extra(name)) is not None},
    )
