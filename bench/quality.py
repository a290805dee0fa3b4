"""Quality benchmark: validation perplexity of the LSTM against a Kneser-Ney 5-gram baseline.

For each corpus (tinyshakespeare and aesops_fables by default) it trains the recipe that
``model.config.resolve`` picks for the corpus size, holding out the last ``--valid-fraction``
of the text by paragraph, under a wall-clock training budget; then it scores the held-out part
with the model and with an interpolated modified Kneser-Ney model estimated from the same
training part (``repl.evaluate``: same vocabulary, same unknown-word rule, same positions).

Output: JSON lines on stdout: the machine (``figure: machine``), one record per corpus, then
a summary::

    {"bench": "quality", "figure": "machine", "cpu_model": ..., "load_average_1_5_15": ..., ...}
    {"bench": "quality", "figure": "corpus", "corpus": "tinyshakespeare", "model_ppl": ...,
     "baseline_ppl": ..., "ratio": ..., "target": 0.85, "pass": true, "train_seconds": ...,
     "recipe": {...}, ...}
    {"bench": "quality", "figure": "summary", "pass": true, "ratios": {"tinyshakespeare": ...}}

The exit status is 0 when every corpus with a target meets it.

Progress goes to stderr. Recipe fields can be overridden for experiments, e.g.
``--set units=256 --set context=8 --set lr=0.003``.

    python bench/quality.py [--corpus NAME ...] [--budget-seconds 600] [--valid-fraction 0.1]
                            [--order 5] [--set FIELD=VALUE ...] [--save DIR]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The numpy scorer runs many small matrix products: one BLAS thread avoids the spinning of
# a multi-threaded BLAS on a busy machine (set before numpy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

TARGETS = {"tinyshakespeare": 0.85, "aesops_fables": 0.95}
DEFAULT_CORPORA = ("tinyshakespeare", "aesops_fables")


def parse_value(text: str):
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def overrides(pairs: list[str]) -> dict:
    from model.config import Config

    known = {f.name for f in fields(Config)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise SystemExit(f"--set expects FIELD=VALUE with FIELD one of {', '.join(sorted(known))}; got {pair!r}")
        out[key] = parse_value(value)
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_one(name: str, args: argparse.Namespace, extra: dict) -> dict:
    from model.bundle import Bundle
    from model.config import Config
    from model.corpus import read_corpus
    from model.network import export_weights
    from model.train import train
    from repl.evaluate import evaluate_text, fit_baseline, split_tokens

    corpus = read_corpus(name, keep_case=bool(extra.get("keep_case", False)))
    cfg = Config(valid_fraction=args.valid_fraction, epochs=args.epochs).replace(**extra)
    stop = threading.Event()
    timer = threading.Timer(args.budget_seconds, stop.set)
    timer.daemon = True
    last = {"t": 0.0}

    def progress(p) -> None:
        now = time.perf_counter()
        if p.kind == "start":
            log(f"[{name}] {p.message}, {p.steps} steps per epoch")
        elif p.kind == "epoch":
            vl = "-" if p.val_loss is None else f"{p.val_loss:.4f} (ppl {math.exp(p.val_loss):.1f})"
            log(f"[{name}] epoch {p.epoch}: loss {p.loss:.4f} acc {p.accuracy:.4f} val_loss {vl} {p.elapsed:.0f}s")
        elif p.kind == "batch" and now - last["t"] >= 30:
            last["t"] = now
            log(f"[{name}] epoch {p.epoch} step {p.step}/{p.steps} loss {p.loss:.4f} {p.elapsed:.0f}s")
        elif p.kind == "end":
            log(f"[{name}] {p.message}")

    timer.start()
    try:
        result = train(corpus, cfg, on_progress=progress, stop=stop)
    finally:
        timer.cancel()
    rcfg = result.config
    corpus_info = {"name": corpus.name, "path": str(corpus.path), "sha256": corpus.sha256, "tokens": len(corpus.tokens)}
    weights = export_weights(result.model, rcfg)
    bundle = Bundle(
        path=Path(args.save or "<memory>") / name,
        config=rcfg,
        vocab=result.vocab,
        weights={k: v.astype("float32") for k, v in weights.items()},
        info={"corpus": corpus_info},
        metrics=result.metrics(),
    )
    if args.save:
        from model.bundle import save_result

        save_result(result, Path(args.save) / name)
    t0 = time.perf_counter()
    _, valid = split_tokens(bundle, corpus)
    baseline = fit_baseline(bundle, args.order, corpus=corpus)
    metrics = evaluate_text(bundle, valid, order=args.order, baseline=baseline)
    eval_seconds = time.perf_counter() - t0
    target = TARGETS.get(name)
    ratio = metrics["ratio"]
    return {
        "bench": "quality",
        "figure": "corpus",
        "corpus": name,
        "model_ppl": round(metrics["perplexity"], 3),
        "baseline_ppl": round(metrics["baseline"]["perplexity"], 3),
        "ratio": round(ratio, 4),
        "target": target,
        "pass": None if target is None else bool(ratio <= target),
        "top1": round(metrics["top1"], 4),
        "top5": round(metrics["top5"], 4),
        "baseline_top1": round(metrics["baseline"]["top1"], 4),
        "baseline_top5": round(metrics["baseline"]["top5"], 4),
        "valid_tokens": metrics["tokens"],
        "oov_rate": round(metrics["oov_rate"], 4),
        "vocab_size": len(result.vocab),
        "train_seconds": round(result.train_seconds, 1),
        "budget_seconds": args.budget_seconds,
        "epochs": result.epochs,
        "stop_reason": result.stop_reason,
        "val_loss": result.val_loss,
        "eval_seconds": round(eval_seconds, 1),
        "recipe": rcfg.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", action="append", help="shipped corpus name or path (repeatable); default both")
    p.add_argument("--budget-seconds", type=float, default=600.0, help="wall-clock training budget per corpus (default 600)")
    p.add_argument("--epochs", type=int, default=1000, help="epoch cap; the budget or validation patience usually stops first")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--order", type=int, default=5, help="Kneser-Ney order (default 5)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a Config field")
    p.add_argument("--save", metavar="DIR", help="also save each trained bundle under DIR/NAME")
    args = p.parse_args(argv)
    if args.budget_seconds <= 0:
        raise SystemExit("--budget-seconds expects a positive number")
    extra = overrides(args.set)
    names = args.corpus or list(DEFAULT_CORPORA)
    from _common import emit, machine_info

    from model.tfload import import_tensorflow

    import_tensorflow()
    emit(machine_info("quality", blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default")))
    ratios: dict[str, float] = {}
    ok = True
    for name in names:
        row = run_one(name, args, extra)
        emit(row)
        ratios[row["corpus"]] = row["ratio"]
        if row["pass"] is False:
            ok = False
    emit({"bench": "quality", "figure": "summary", "pass": ok, "ratios": ratios, "overrides": extra})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
