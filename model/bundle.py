"""A saved model is one directory, written atomically:

    model.keras     Keras weights, architecture and optimizer state (for resuming training)
    weights.npz     the same weights as plain arrays, for the TensorFlow-free predictor
    vocab.json      the vocabulary, with a format version
    config.json     the configuration, corpus identity (name, sha256) and format version
    metrics.json    accuracy, ceiling, per-epoch history, library versions

Files are written into a temporary sibling directory, synced, then swapped into place by
one rename, so a crash (even SIGKILL) leaves either the old bundle or the new one.
Loading never runs code from the bundle: no pickle, and Keras safe mode.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
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
from model.vocab import Vocab

FORMAT_VERSION = 1
FILES = ("model.keras", "weights.npz", "vocab.json", "config.json", "metrics.json")
ARCH_KEYS = {
    "lstm": ("lstm",),
    "stacked": ("lstm_1", "lstm_2"),
    "bilstm": ("forward", "backward"),
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

    def parameter_count(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def keras_model(self):
        """The Keras model with its optimizer state (imports TensorFlow)."""
        from model import network  # noqa: F401  (imports TensorFlow quietly first)

        import keras

        try:
            return keras.saving.load_model(self.path / "model.keras", compile=True, safe_mode=True)
        except Exception as e:  # noqa: BLE001 - any failure here is a broken file
            raise StoryError(f"cannot load {self.path / 'model.keras'}: {str(e).splitlines()[0][:200]}") from None


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
def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2). False where unsupported."""
    if not hasattr(os, "uname") or os.uname().sysname != "Linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(str(a)), AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE)
    return rc == 0


def _swap_into_place(tmp: Path, target: Path) -> None:
    try:
        os.rename(tmp, target)  # atomic when target does not exist (or is an empty dir)
        return
    except OSError:
        if not target.exists():
            raise
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old bundle
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def save_bundle(
    target: str | os.PathLike,
    *,
    model: Any,
    config: Config,
    vocab: Vocab,
    weights: dict[str, np.ndarray],
    corpus: dict[str, Any],
    metrics: dict[str, Any],
) -> Path:
    """Write a bundle to ``target`` atomically; the previous bundle there survives any failure."""
    target = Path(os.path.expanduser(str(target))).absolute()
    if target.exists() and not target.is_dir():
        raise StoryError(f"cannot save to {target}: it is a file, not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as e:
        raise StoryError(f"cannot save to {target}: {e.strerror or e}") from None
    try:
        if model is not None:
            model.save(tmp / "model.keras")
            with open(tmp / "model.keras", "rb") as fh:
                os.fsync(fh.fileno())
        with open(tmp / "weights.npz", "wb") as fh:
            np.savez(fh, **{k: np.asarray(v, np.float32) for k, v in weights.items()})
            fh.flush()
            os.fsync(fh.fileno())
        _write(tmp / "vocab.json", vocab.to_json().encode("utf-8"))
        info = {
            "format_version": FORMAT_VERSION,
            "config": config.to_dict(),
            "vocab_size": len(vocab),
            "corpus": corpus,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _write(tmp / "config.json", json.dumps(info, indent=2, ensure_ascii=False).encode("utf-8"))
        full_metrics = {"format_version": FORMAT_VERSION, **metrics, "versions": library_versions()}
        _write(tmp / "metrics.json", json.dumps(full_metrics, indent=2, ensure_ascii=False).encode("utf-8"))
        _fsync_dir(tmp)
        _swap_into_place(tmp, target)
        _fsync_dir(target.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise StoryError(f"cannot save to {target}: {e.strerror or e}; the previous model there is untouched") from None
        raise
    return target


# ---- loading ----------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoryError(f"{path.parent} is not a complete model: {path.name} is missing") from None
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


def check_weights(config: Config, vocab_size: int, weights: dict[str, np.ndarray], where: Path) -> None:
    """Raise if the arrays do not form the network ``config`` describes for ``vocab_size`` words."""
    need = ["embedding", "logits/kernel", "logits/bias"]
    for p in ARCH_KEYS[config.arch]:
        need += [f"{p}/kernel", f"{p}/recurrent", f"{p}/bias"]
    missing = [k for k in need if k not in weights]
    if missing:
        raise StoryError(f"{where} weights do not match its config ({config.arch}): missing {missing[0]}")
    emb, out = weights["embedding"], weights["logits/kernel"]
    if emb.shape[0] != vocab_size + 1 or out.shape[-1] != vocab_size or weights["logits/bias"].shape != (vocab_size,):
        raise StoryError(
            f"{where}: vocab.json has {vocab_size} words but the weights are for {out.shape[-1]}; the bundle is inconsistent"
        )
    u = config.units
    for p in ARCH_KEYS[config.arch]:
        if weights[f"{p}/recurrent"].shape != (u, 4 * u):
            raise StoryError(f"{where}: {p} weights are not {u}-unit LSTM weights; the bundle is inconsistent")


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Load a bundle for inference (numpy only). Every problem is one StoryError line."""
    path = Path(os.path.expanduser(str(path))).absolute()
    if not path.exists():
        raise StoryError(f"no model at {path}")
    if not path.is_dir():
        raise StoryError(f"{path} is not a model directory")
    info = _read_json(path / "config.json", "model")
    vocab_file = path / "vocab.json"
    try:
        vocab = Vocab.from_json(vocab_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoryError(f"{path} is not a complete model: vocab.json is missing") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StoryError(f"{vocab_file} is unreadable ({type(e).__name__}); retrain or re-save the model") from None
    try:
        config = Config.from_dict(dict(info.get("config") or {}))
    except (StoryError, TypeError) as e:
        raise StoryError(f"{path / 'config.json'} has an invalid configuration: {e}") from None
    if config.context is None or config.embedding_dim is None:
        raise StoryError(f"{path / 'config.json'} is incomplete (no context or embedding size)")
    try:
        with np.load(path / "weights.npz", allow_pickle=False) as z:
            weights = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except FileNotFoundError:
        raise StoryError(f"{path} is not a complete model: weights.npz is missing") from None
    except Exception as e:  # noqa: BLE001 - zip/npy errors of every kind mean a broken file
        raise StoryError(f"{path / 'weights.npz'} is truncated or corrupt ({type(e).__name__}); retrain the model") from None
    check_weights(config, len(vocab), weights, path)
    if info.get("vocab_size") not in (None, len(vocab)):
        raise StoryError(f"{path}: config.json says {info.get('vocab_size')} words but vocab.json has {len(vocab)}")
    metrics: dict[str, Any] = {}
    try:
        metrics = _read_json(path / "metrics.json", "model")
    except StoryError:
        metrics = {}
    return Bundle(path=path, config=config, vocab=vocab, weights=weights, info=info, metrics=metrics)


def save_result(result: Any, target: str | os.PathLike) -> Path:
    """Save a :class:`model.train.TrainResult` as a bundle."""
    from model.network import export_weights

    return save_bundle(
        target,
        model=result.model,
        config=result.config,
        vocab=result.vocab,
        weights=export_weights(result.model, result.config),
        corpus={"name": result.corpus_name, "path": result.corpus_path, "sha256": result.corpus_sha256, "tokens": result.n_tokens},
        metrics=result.metrics(),
    )


def copy_bundle(bundle: Bundle, target: str | os.PathLike) -> Path:
    """Save an already loaded bundle elsewhere (atomically), keeping its Keras file."""
    target = Path(os.path.expanduser(str(target))).absolute()
    if target == bundle.path:
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
    )
