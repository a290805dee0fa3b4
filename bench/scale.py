"""Big texts on one machine: reading speed, memory and time to train, at 10 MB, 100 MB and 1 GB.

For each size, a text is generated from a shipped corpus (its lines repeated and shuffled by
a fixed seed) and these figures are printed as JSON lines, each measured in this run:

* ``read``: reading the file to ids, the full vocabulary and paragraph offsets
  (``read_corpus`` in a fresh process with an empty cache), in MB/s and as a ratio to
  ``wc -w`` on the same file (the baseline: the time to count its words); peak RSS.
* ``read_cached``: the same call when the id cache holds the file.
* ``read_old`` (10 MB only): the previous way, ``tokenize`` on the whole text plus
  ``Vocab.build``, as a second baseline.
* ``train``: ``story-repl train FILE --time-limit 60 --json`` with empty caches: time to the
  training start line (printed just before the first step), wall time, peak RSS of the
  process and of its process tree (tokenizer workers included), the latter also by phase:
  up to the start line, during the time limit after it, and after that (the end of the
  last batch, saving the model and whatever else follows training).
* ``train_cached``: the same command again with ``--force`` (a retrain: ids from the cache).

    nice -n 10 .venv/bin/python bench/scale.py [--sizes 10M,100M,1G] [--time-limit 60]
"""
from __future__ import annotations

from _common import CORPORA, ROOT, emit, machine_info  # first: sets sys.path, BLAS, TF logging

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PY = sys.executable
STORY = str(Path(sys.executable).with_name("story-repl"))


def parse_size(text: str) -> int:
    text = text.strip().upper()
    for suffix, mult in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * mult)
    return int(text)


def generate(path: Path, corpus: str, size: int, seed: int) -> None:
    """``corpus``'s lines repeated to ``size`` bytes (or just over), in an order shuffled by ``seed``."""
    lines = (CORPORA / f"{corpus}.txt").read_text(encoding="utf-8").splitlines()
    encoded = [ln.encode("utf-8") + b"\n" for ln in lines]
    per_copy = sum(len(b) for b in encoded)
    copies = -(-size // per_copy)
    order = list(range(len(encoded))) * copies
    random.Random(seed).shuffle(order)
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        buf: list[bytes] = []
        for i in order:
            buf.append(encoded[i])
            if len(buf) >= 65536:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
    os.replace(tmp, path)


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - t0, out


def wc_seconds(path: Path, repeats: int = 3) -> tuple[float, int]:
    best, words = float("inf"), 0
    for _ in range(repeats):
        dt, out = timed(["wc", "-w", str(path)])
        best = min(best, dt)
        words = int(out.stdout.split()[0])
    return best, words


HWM = """
def hwm_mb(pid="self"):
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
"""

READ_SNIPPET = HWM + """
import json, resource, sys, time
t0 = time.perf_counter()
from model.text.corpus import read_corpus
c = read_corpus(sys.argv[1])
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "tokens": c.n_tokens, "words": len(c.words), "paragraphs": len(c.paragraph_starts),
                  "peak_rss_mb": round(hwm_mb(), 1)}))
"""

OLD_SNIPPET = HWM + """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from model.text.tokenize import tokenize
from model.text.vocab import Vocab
text = Path(sys.argv[1]).read_text(encoding="utf-8")
tokens = tokenize(text)
v = Vocab.build(tokens)
ids = v.encode(tokens)
print(json.dumps({"seconds": time.perf_counter() - t0, "tokens": len(tokens), "words": len(v),
                  "peak_rss_mb": round(hwm_mb(), 1)}))
"""


def run_json(snippet: str, path: Path, env: dict) -> dict:
    wall, out = timed([PY, "-c", snippet, str(path)], env=env)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1], "wall_seconds": wall}
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec["wall_seconds"] = wall
    return rec


def tree_rss_kb(root: int) -> tuple[int, int]:
    """(VmRSS of ``root``, VmRSS summed over ``root`` and its descendants), in kB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            with open(f"/proc/{entry}/status") as fh:
                kb = next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry)] = ppid
        rss[int(entry)] = kb
    family = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in family and pid not in family:
                family.add(pid)
                grew = True
    return rss.get(root, 0), sum(rss.get(p, 0) for p in family)


def parse_duration(text: str) -> float:
    text = text.strip().lower()
    for suffix, mult in (("h", 3600), ("m", 60), ("s", 1)):
        if text.endswith(suffix):
            return float(text[:-1]) * mult
    return float(text)


def run_train(path: Path, env: dict, time_limit: str, force: bool, timeout: float, after: float | None = None) -> dict:
    """One training run; killed after ``timeout`` s, or ``after`` s past the end of its time limit."""
    cmd = [STORY, "train", str(path), "--time-limit", time_limit, "--json", "--no-chart"] + (["--force"] if force else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    marks: dict[str, float] = {}
    err_lines: list[str] = []

    def read_err() -> None:
        for line in proc.stderr:
            err_lines.append(line.rstrip())
            if "windows, ceiling" in line and "start" not in marks:
                marks["start"] = time.perf_counter() - t0

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    peak_main = peak_tree = 0
    phases = {"to_start": 0, "training": 0, "after": 0}  # peak tree RSS (kB) in each phase
    limit_s = parse_duration(time_limit)
    timed_out = False
    while proc.poll() is None:
        main_kb, tree_kb = tree_rss_kb(proc.pid)
        peak_main, peak_tree = max(peak_main, main_kb), max(peak_tree, tree_kb)
        now = time.perf_counter() - t0
        phase = "to_start" if "start" not in marks else "training" if now <= marks["start"] + limit_s else "after"
        phases[phase] = max(phases[phase], tree_kb)
        ended = "start" in marks and after is not None and now > marks["start"] + limit_s + after
        if now > timeout or ended:
            proc.kill()
            timed_out = True
            break
        time.sleep(0.2)
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    reader.join(timeout=5)
    rec: dict = {
        "wall_seconds": round(wall, 2),
        "seconds_to_training_start": round(marks["start"], 2) if "start" in marks else None,
        "peak_rss_mb": round(peak_main / 1024, 1),
        "peak_rss_tree_mb": round(peak_tree / 1024, 1),
        "peak_rss_tree_mb_by_phase": {k: round(v / 1024, 1) for k, v in phases.items()},
        "exit": proc.returncode,
        "timed_out": timed_out,
    }
    try:
        result = json.loads(out.strip().splitlines()[-1])
        rec.update({k: result.get(k) for k in ("train_seconds", "epochs", "stop_reason", "vocab_size", "context", "arch")})
    except (ValueError, IndexError):
        rec["stderr_tail"] = err_lines[-3:]
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10M,100M,1G")
    ap.add_argument("--corpus", default="tinyshakespeare")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--time-limit", default="60")
    ap.add_argument("--train-timeout", type=float, default=900.0, help="kill a training run after this many seconds")
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-read", action="store_true", help="only the training figures")
    ap.add_argument("--stop-after", type=float, default=None,
                    help="kill a training run this many seconds after its time limit has passed (what follows is not measured)")
    ap.add_argument("--workdir", default=None, help="where the generated texts are kept (default: a temporary directory)")
    args = ap.parse_args(argv)
    emit(machine_info("scale", with_tf=False, corpus=args.corpus))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="story-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env_base = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        for label in args.sizes.split(","):
            size = parse_size(label)
            path = workdir / f"{args.corpus}-{label}-seed{args.seed}.txt"
            if not path.exists():
                t0 = time.perf_counter()
                generate(path, args.corpus, size, args.seed)
                emit({"bench": "scale", "figure": "generated", "size": label, "bytes": path.stat().st_size,
                      "seconds": round(time.perf_counter() - t0, 1)})
            nbytes = path.stat().st_size
            mb = nbytes / 1e6
            wc_s, wc_words = wc_seconds(path)
            base = {"bench": "scale", "size": label, "bytes": nbytes, "wc_w_seconds": round(wc_s, 3), "wc_w_mb_s": round(mb / wc_s, 1)}
            home = Path(tempfile.mkdtemp(prefix="story-home-", dir=workdir))
            env = dict(env_base, STORY_REPL_HOME=str(home))
            try:
                for figure in () if args.no_read else ("read", "read_cached"):
                    rec = run_json(READ_SNIPPET, path, env)
                    if "seconds" in rec:
                        rec.update(mb_s=round(mb / rec["seconds"], 1), ratio_to_wc_w=round(rec["seconds"] / wc_s, 2),
                                   seconds=round(rec["seconds"], 3))
                    emit({**base, "figure": figure, "wc_w_words": wc_words, **rec})
                if nbytes <= 20 * 10**6 and not args.no_read:
                    rec = run_json(OLD_SNIPPET, path, env)
                    if "seconds" in rec:
                        rec.update(mb_s=round(mb / rec["seconds"], 1), ratio_to_wc_w=round(rec["seconds"] / wc_s, 2),
                                   seconds=round(rec["seconds"], 3))
                    emit({**base, "figure": "read_old", **rec})
                if not args.no_train:
                    shutil.rmtree(home)
                    home.mkdir()
                    for figure, force in (("train", False), ("train_cached", True)):
                        rec = run_train(path, env, args.time_limit, force, args.train_timeout, args.stop_after)
                        emit({**base, "figure": figure, "time_limit": args.time_limit, **rec})
            finally:
                shutil.rmtree(home, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    emit({"bench": "scale", "figure": "self", "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
