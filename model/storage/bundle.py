"""A saved model is one directory, written atomically:

    model.keras     Keras weights, architecture and optimizer state (for resuming training)
    weights.npz     the same weights as plain arrays, for the TensorFlow-free predictor
    vocab.json      the vocabulary, with a format version
    config.json     the configuration, corpus identity (name, sha256), format version and
                    the sha256 of model.keras, weights.npz and vocab.json (written last)
    metrics.json    accuracy, ceiling, per-epoch history, library versions
    words.json      the full vocabulary: every word of the training text, with counts
    ngram.npz       the Kneser-Ney component over that vocabulary, as plain arrays
    mixture.json    the mixture's weights, fitted on held-out text (see model/prediction/build.py)

The last three are the predictor's other components; a bundle without them (an older one)
still loads, and they are rebuilt from its training text when it can be read.

Files are written into a temporary sibling directory (``.NAME.tmp-PID-*``), synced, then
swapped into place by one rename, so a crash (even SIGKILL) leaves either the old bundle or
the new one; the next save or load removes what a dead process left behind. A directory
that holds anything but bundle files is never replaced. Loading checks the checksums and
every array's shape, and never runs code from the bundle: no pickle, and Keras safe mode.
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
from model.storage.files import exchange_dirs, file_digest, fsync_dir, fsync_file, write_synced
from model.text.vocab import Vocab

FORMAT_VERSION = 1
EXTRAS = ("words.json", "ngram.npz", "mixture.json")
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

    @property
    def corpus_sha256(self) -> str:
        return str(self.info.get("corpus", {}).get("sha256", ""))

    @property
    def corpus_name(self) -> str:
        return str(self.info.get("corpus", {}).get("name", "?"))

    @property
    def corpus_path(self) -> str:
        return str(self.info.get("corpus", {}).get("path", ""))

    def training_corpus(self, encoding: str = "utf-8"):
        """The text this model was trained on, read again (with its case rule) and checked against
        the sha256 it recorded, so what is measured on it is measured on that very text. A one-line
        StoryError naming the file when the text is not recorded, cannot be read or has changed."""
        from model.text.corpus import read_corpus

        path, sha = self.corpus_path, self.corpus_sha256
        if not path:
            raise StoryError(f"{self.path} does not record which text it was trained on; that text is needed here")
        try:
            corpus = read_corpus(path, encoding=encoding, keep_case=bool(self.config.keep_case))
        except StoryError as e:
            raise StoryError(f"cannot read the model's training text: {e}") from None
        if sha and corpus.sha256 != sha:
            raise StoryError(
                f"{corpus.path} has changed since the model was trained on it (sha256 differs); restore it or retrain the model"
            )
        return corpus

    def extra(self, name: str) -> bytes | None:
        """The bytes of an optional component file (checked against its checksum), or None."""
        f = self.path / name
        try:
            data = f.read_bytes()
        except OSError:
            return None
        expected = (self.info.get("files") or {}).get(name)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise StoryError(f"{f} does not match the bundle it is in (checksum differs); retrain or re-save the model")
        return data

    def parameter_count(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def keras_model(self):
        """The Keras model with its optimizer state (imports TensorFlow)."""
        from model.training import network  # noqa: F401  (imports TensorFlow quietly first)

        import keras

        keras_file = self.path / "model.keras"
        if not keras_file.is_file():
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
def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoryError(f"{path.parent} is not a complete model: {path.name} is missing; retrain or re-save the model") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise StoryError(f"{path} is unreadable or corrupt ({type(e).__name__}); retrain or re-save the model") from None
    if not isinstance(data, dict):
        raise StoryError(f"{path} is malformed; retrain or re-save the model")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise StoryError(f"{path} has no format version; it is not a story-repl {what}")
    if version > FORMAT_VERSION:
        raise StoryError(f"{path} has format version {version}, newer than this story-repl ({FORMAT_VERSION}); upgrade story-repl")
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
        raise StoryError(f"{where} weights do not match its config ({config.arch}): missing {missing[0]}; retrain the model")
    out = weights["logits/bias"]
    if out.ndim == 1 and out.shape[-1] != vocab_size:
        raise StoryError(
            f"{where}: vocab.json has {vocab_size} words but the weights are for {out.shape[-1]}; "
            f"the bundle is inconsistent: retrain or re-save the model"
        )
    for name, shape in shapes.items():
        if tuple(weights[name].shape) != shape:
            raise StoryError(
                f"{where}: {name} has shape {tuple(weights[name].shape)}, not {shape} as its config and vocabulary "
                f"need; the bundle is inconsistent: retrain or re-save the model"
            )


def _check_sum(path: Path, data: bytes, files: dict) -> None:
    expected = files.get(path.name)
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise StoryError(
            f"{path} does not match the bundle it is in (checksum differs); retrain or re-save the model"
        )


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load a bundle for inference (numpy only). Every problem is one StoryError line.

    Nothing in the bundle is executed: JSON files, and arrays read with ``allow_pickle=False``.
    """
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
    info = _read_json(path / "config.json", "model")
    files = info.get("files") if isinstance(info.get("files"), dict) else {}
    vocab_file = path / "vocab.json"
    try:
        vocab_bytes = vocab_file.read_bytes()
        _check_sum(vocab_file, vocab_bytes, files)
        vocab = Vocab.from_json(vocab_bytes.decode("utf-8"))
    except FileNotFoundError:
        raise StoryError(f"{path} is not a complete model: vocab.json is missing; retrain or re-save the model") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoryError(f"{vocab_file} is unreadable ({type(e).__name__}); retrain or re-save the model") from None
    raw_config = info.get("config")
    if not isinstance(raw_config, dict):
        raise StoryError(f"{path / 'config.json'} has no valid configuration; retrain or re-save the model")
    try:
        config = Config.from_dict(raw_config)
    except (StoryError, TypeError, ValueError) as e:
        raise StoryError(f"{path / 'config.json'} has an invalid configuration: {e}") from None
    if config.context is None or config.embedding_dim is None or config.units is None:
        raise StoryError(f"{path / 'config.json'} is incomplete (no context or embedding size); retrain the model")
    weights_file = path / "weights.npz"
    try:
        data = weights_file.read_bytes()
    except FileNotFoundError:
        raise StoryError(f"{path} is not a complete model: weights.npz is missing; retrain the model") from None
    except OSError as e:
        raise StoryError(f"cannot read {weights_file}: {e.strerror or e}") from None
    _check_sum(weights_file, data, files)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            weights = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e).lower():
            raise StoryError(
                f"{weights_file} holds pickled Python objects, which could run code; refusing to load it "
                f"(a story-repl model has only plain arrays): retrain the model"
            ) from None
        raise StoryError(f"{weights_file} is truncated or corrupt ({type(e).__name__}); retrain the model") from None
    except Exception as e:  # noqa: BLE001 - zip/npy errors of every kind mean a broken file
        raise StoryError(f"{weights_file} is truncated or corrupt ({type(e).__name__}); retrain the model") from None
    check_weights(config, len(vocab), weights, path)
    if info.get("vocab_size") not in (None, len(vocab)):
        raise StoryError(
            f"{path}: config.json says {info.get('vocab_size')} words but vocab.json has {len(vocab)}; retrain or re-save the model"
        )
    metrics: dict[str, Any] = {}
    try:
        metrics = _read_json(path / "metrics.json", "model")
    except StoryError:
        metrics = {}
    return Bundle(path=path, config=config, vocab=vocab, weights=weights, info=info, metrics=metrics)


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


def copy_bundle_with(bundle: Bundle, extras: dict[str, bytes]) -> Path:
    """Rewrite ``bundle`` in place (atomically) with these component files added."""
    return copy_bundle(bundle, bundle.path, extras=extras, force=True)


def copy_bundle(bundle: Bundle, target: str | os.PathLike, extras: dict[str, bytes] | None = None, force: bool = False) -> Path:
    """Save an already loaded bundle elsewhere (atomically), keeping its Keras file."""
    target = Path(os.path.expanduser(str(target))).absolute()
    if target == bundle.path and not force:
        return target
    src_keras = bundle.path / "model.keras"

    class _Copy:
        def save(self, dest):
            shutil.copyfile(src_keras, dest)

    metrics = {k: v for k, v in bundle.metrics.items() if k not in ("format_version", "versions")}
    return save_bundle(
        target,
        model=_Copy() if src_keras.exists() else None,
        config=bundle.config,
        vocab=bundle.vocab,
        weights=bundle.weights,
        corpus=dict(bundle.info.get("corpus") or {}),
        metrics=metrics,
        extras=extras if extras is not None else {name: data for name in EXTRAS if (data := bundle.extra(name)) is not None},
    )
