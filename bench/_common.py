"""What every benchmark script shares. Each imports it first (``python bench/x.py`` puts bench/
on sys.path), and on import it sets up the process before anything loads numpy or TensorFlow:

- the repository on sys.path, so ``model`` and ``repl`` are this checkout's;
- TensorFlow's C++ log quiet (TF_CPP_MIN_LOG_LEVEL=3, unless set);
- one BLAS thread (OPENBLAS_NUM_THREADS=1, unless set) for the scripts that score with numpy:
  the predictor runs many small matrix products, and a multi-threaded BLAS spins on a busy
  machine (the CLI does the same). The scripts in OWN_BLAS_THREADS keep the library's count.

Then: JSON-line output (``emit``), progress on stderr (``logger``) and the machine's description
(``machine_info``, the first record of every run).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "corpora"

# Scripts that leave BLAS at the library's own thread count: they measure the machine (numpy's
# matmul peak) or the REPL and the CLI as a user runs them, and report the setting as found.
OWN_BLAS_THREADS = frozenset({"throughput", "train_speed", "latency", "scale"})

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if Path(sys.argv[0] if sys.argv else "").stem not in OWN_BLAS_THREADS:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def logger(name: str | None = None) -> Callable[[str], None]:
    """A progress printer: each message on its own line of stderr (flushed), after ``[name]`` if given."""
    prefix = f"[{name}] " if name else ""

    def log(msg: str) -> None:
        print(f"{prefix}{msg}", file=sys.stderr, flush=True)

    return log


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line on stdout (flushed, so partial runs still leave their figures)."""
    sys.stdout.write(json.dumps(record, ensure_ascii=False, default=_default) + "\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(bench: str, with_tf: bool = True, **extra: Any) -> dict[str, Any]:
    """One record describing where the figures were taken."""
    import importlib.metadata as md

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "bench": bench,
        "figure": "machine",
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_1_5_15": load_average(),
    }
    for name in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "prompt_toolkit"):
        try:
            info[name.replace("-", "_")] = md.version(name)
        except md.PackageNotFoundError:
            pass
    if with_tf and "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        info["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        info["tf_inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    info.update(extra)
    return info


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    xs = list(values)
    return statistics.median(xs) if xs else float("nan")
