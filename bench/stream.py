"""Stream benchmark: the stream arch (tied and untied) against today's windowed book recipe.

For each corpus (aesops_fables and tinyshakespeare by default) and each variant, it trains
under the same wall-clock budget (``train(..., time_limit=...)``, what ``story-repl train
--time-limit`` does), holding out the last ``--valid-fraction`` of the text by paragraph,
saves the bundle (with its mixture components) and scores the held-out part exactly as
``story-repl eval --valid --model DIR --json`` does: the predictor (mixture), the LSTM
component alone, and the order-5 Kneser-Ney over the full training vocabulary, all on the
same positions. The baseline of every ratio is that Kneser-Ney, measured in the same run.

Variants (``--variant``, repeatable; default all three):

- ``window``: the windowed ``lstm`` book recipe (context 8, 384 units, dropout 0.6, sampled softmax);
- ``stream``: the ``stream`` arch, untied;
- ``stream-tied``: the ``stream`` arch with the output layer tied to the embedding.

``--set FIELD=VALUE`` overrides a Config field of the stream variants (``--set-all`` of every
variant), e.g. ``--set dropout=0.3 --set batch_size=20``. ``--contexts 16,64`` also scores the
LSTM component with other inference windows (how much a shorter history costs).

Output: JSON lines on stdout: the machine, one ``run`` record per (corpus, variant), one
``summary`` per corpus. Training runs one at a time; progress goes to stderr::

    nice -n 10 .venv/bin/python bench/stream.py [--corpus NAME ...] [--variant NAME ...]
        [--budget-seconds 600] [--valid-fraction 0.1] [--set FIELD=VALUE ...] [--keep DIR]
"""
from __future__ import annotations

from _common import emit, logger, machine_info  # first: sets sys.path, BLAS, TF logging

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from quality import overrides  # FIELD=VALUE parsing shared with bench/quality.py

DEFAULT_CORPORA = ("aesops_fables", "tinyshakespeare")
VARIANTS = {
    "window": {"arch": "lstm"},
    "stream": {"arch": "stream", "tie_weights": False},
    "stream-tied": {"arch": "stream", "tie_weights": True},
}
# Targets for the whole predictor on the held-out tenth (ratios to the order-5 Kneser-Ney).
LSTM_TARGET = 0.95
MIXTURE_TARGET = 0.80
CLI_FLAGS = {  # Config fields story-repl train/eval take as flags
    "arch": "--arch", "context": "--context", "units": "--units", "embedding_dim": "--embedding-dim",
    "optimizer": "--optimizer", "lr": "--lr", "batch_size": "--batch-size", "epochs": "--epochs",
    "dropout": "--dropout", "seed": "--seed", "max_vocab": "--max-vocab", "min_count": "--min-count",
    "objective": "--objective",
}


log = logger()


def cli_command(corpus: str, fields: dict, budget: float, valid_fraction: float) -> str:
    """The story-repl command lines that train and score this variant (where flags exist)."""
    flags = []
    for k, v in fields.items():
        if k in CLI_FLAGS:
            flags.append(f"{CLI_FLAGS[k]} {v}")
        else:
            flags.append(f"(config {k}={v}: no CLI flag)")
    f = " ".join(flags)
    return (
        f"story-repl train {corpus} --valid-fraction {valid_fraction:g} --time-limit {budget:g}s {f} --out DIR --json; "
        f"story-repl eval --valid --model DIR --json"
    )


def lstm_perplexity_at(bundle, tokens, context: int) -> float:
    """The LSTM component's held-out perplexity when it reads ``context`` previous words."""
    from dataclasses import replace

    from model.prediction.predictor import Predictor
    from model.evaluation.evaluate import evaluate_text

    other = replace(bundle, config=bundle.config.replace(context=context))
    res = evaluate_text(other, tokens, predictor=Predictor(other))
    return float(res["components"]["lstm"]["perplexity"])


def run_one(corpus_name: str, variant: str, fields: dict, args: argparse.Namespace, out_dir: Path) -> dict:
    from model.storage.bundle import load_bundle, save_result
    from model.config import Config
    from model.text.corpus import read_corpus
    from model.prediction.predictor import Predictor
    from model.training.train import train
    from model.evaluation.evaluate import evaluate_text, validation_tokens

    corpus = read_corpus(corpus_name)
    cfg = Config(valid_fraction=args.valid_fraction, epochs=args.epochs, seed=args.seed).replace(**fields)
    last = {"t": 0.0}

    def progress(p) -> None:
        now = time.perf_counter()
        tag = f"[{corpus_name}/{variant}]"
        if p.kind == "start":
            log(f"{tag} {p.message}, {p.steps} steps per epoch")
        elif p.kind == "epoch":
            vl = "-" if p.val_loss is None else f"{p.val_loss:.4f} (ppl {math.exp(min(p.val_loss, 50)):.1f})"
            log(f"{tag} epoch {p.epoch}: loss {p.loss:.4f} acc {p.accuracy:.4f} val_loss {vl} {p.elapsed:.0f}s")
        elif p.kind == "batch" and now - last["t"] >= 60:
            last["t"] = now
            log(f"{tag} epoch {p.epoch} step {p.step}/{p.steps} loss {p.loss:.4f} {p.tokens_per_s:.0f} tok/s {p.elapsed:.0f}s")
        elif p.kind == "end":
            log(f"{tag} {p.message}")

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = train(corpus, cfg, on_progress=progress, time_limit=args.budget_seconds)
    cpu_seconds = time.process_time() - cpu0  # this process's CPU time (both cores), training and fitting
    fit_seconds = time.perf_counter() - t0 - result.train_seconds  # vocabulary, mixture weights, ...
    path = save_result(result, out_dir / f"{corpus_name}-{variant}")
    t1 = time.perf_counter()
    bundle = load_bundle(path)
    tokens = validation_tokens(bundle)
    metrics = evaluate_text(bundle, tokens, predictor=Predictor(bundle))
    eval_seconds = time.perf_counter() - t1
    base = metrics["baseline"]["perplexity"]
    best_val = min(result.history["val_loss"]) if result.history.get("val_loss") else None
    lstm = metrics["components"]["lstm"]["perplexity"]
    row = {
        "bench": "stream",
        "figure": "run",
        "corpus": corpus_name,
        "variant": variant,
        "baseline": f"kneser-ney order {metrics['baseline']['order']}, full vocabulary",
        "baseline_ppl": round(base, 3),
        "lstm_ppl": round(lstm, 3),
        "lstm_ratio": round(lstm / base, 4),
        "mixture_ppl": round(metrics["perplexity"], 3),
        "mixture_ratio": round(metrics["ratio"], 4),
        "lstm_target": LSTM_TARGET,
        "mixture_target": MIXTURE_TARGET,
        "top1": round(metrics["top1"], 4),
        "baseline_top1": round(metrics["baseline"]["top1"], 4),
        "weights": {k: round(v["weight"], 3) for k, v in metrics["components"].items()},
        "valid_tokens": metrics["tokens"],
        "vocab_size": metrics["model"]["vocab_size"],
        "lstm_vocab_size": metrics["model"]["lstm_vocab_size"],
        "train_seconds": round(result.train_seconds, 1),
        "budget_seconds": args.budget_seconds,
        "other_seconds": round(fit_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "eval_seconds": round(eval_seconds, 1),
        "epochs": result.epochs,
        "stop_reason": result.stop_reason,
        "best_val_loss": best_val,
        "val_ppl_own_vocab": None if best_val is None else round(math.exp(best_val), 3),
        "recipe": result.config.to_dict(),
        "command": cli_command(corpus_name, fields, args.budget_seconds, args.valid_fraction),
    }
    for c in args.contexts:
        if c != result.config.context:
            row[f"lstm_ppl_context_{c}"] = round(lstm_perplexity_at(bundle, tokens, c), 3)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", action="append", help="shipped corpus name or path (repeatable); default both")
    p.add_argument("--variant", action="append", choices=list(VARIANTS), help="repeatable; default all")
    p.add_argument("--budget-seconds", type=float, default=600.0, help="training time limit per run (default 600)")
    p.add_argument("--epochs", type=int, default=1000, help="epoch cap; the budget or validation patience stops first")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a Config field of the stream variants")
    p.add_argument("--set-all", action="append", default=[], metavar="FIELD=VALUE", help="override a Config field of every variant")
    p.add_argument("--contexts", default="", help="comma-separated inference windows to also score the LSTM with")
    p.add_argument("--keep", metavar="DIR", help="keep the trained bundles under DIR (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.budget_seconds <= 0:
        raise SystemExit("--budget-seconds expects a positive number")
    args.contexts = [int(c) for c in args.contexts.split(",") if c.strip()]
    stream_extra, all_extra = overrides(args.set), overrides(args.set_all)
    from model.training.tfload import import_tensorflow

    import_tensorflow()
    emit(machine_info("stream", blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default")))
    tmp = None
    if args.keep:
        out_dir = Path(args.keep)
        out_dir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="story-bench-stream-")
        out_dir = Path(tmp.name)
    try:
        for corpus_name in args.corpus or list(DEFAULT_CORPORA):
            rows = []
            for variant in args.variant or list(VARIANTS):
                fields = dict(VARIANTS[variant])
                if fields["arch"] == "stream":
                    fields.update(stream_extra)
                fields.update(all_extra)
                row = run_one(corpus_name, variant, fields, args, out_dir)
                emit(row)
                rows.append(row)
            best = min(rows, key=lambda r: r["lstm_ratio"])
            emit(
                {
                    "bench": "stream",
                    "figure": "summary",
                    "corpus": corpus_name,
                    "baseline": "kneser-ney order 5 (same run, same positions)",
                    "lstm_ratios": {r["variant"]: r["lstm_ratio"] for r in rows},
                    "mixture_ratios": {r["variant"]: r["mixture_ratio"] for r in rows},
                    "best_lstm": best["variant"],
                    "lstm_pass": best["lstm_ratio"] <= LSTM_TARGET,
                    "mixture_pass": min(r["mixture_ratio"] for r in rows) <= MIXTURE_TARGET,
                    "overrides": {"stream": stream_extra, "all": all_extra},
                }
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
