"""Quality benchmark: held-out perplexity of the predictor, each of its components and Kneser-Ney.

For each corpus (tinyshakespeare and aesops_fables by default) it trains the recipe that
``model.config.resolve`` picks for the corpus size, holding out the last ``--valid-fraction``
of the text by paragraph, under a training time budget (``train(time_limit=...)``), or takes
the cached model of that recipe with ``--cached``. Then it scores the held-out part with the
mixture predictor (LSTM + Kneser-Ney + cache, ``model.evaluation.evaluate``: every word of the training
text in the vocabulary, OOV targets not scored), with each component alone on the same
positions, and with the order-5 Kneser-Ney baseline over the same full vocabulary.

The mixture's weights are fitted by EM on the validation split itself. To show what that
costs, ``twofold`` refits them on one half of the held-out text and scores the other half
(both ways), giving the mixture's ratio to Kneser-Ney on text its weights never saw.

Output: JSON lines on stdout: the machine (``figure: machine``), one record per corpus, then
a summary::

    {"bench": "quality", "figure": "corpus", "corpus": "tinyshakespeare", "mixture_ppl": ...,
     "baseline_ppl": ..., "ratio": ..., "components": {"lstm": {"weight", "perplexity", "ratio"}, ...},
     "twofold_ratio": ..., "targets": {...}, "pass": true, "train_seconds": ..., "recipe": {...}}
    {"bench": "quality", "figure": "summary", "pass": true, "ratios": {"tinyshakespeare": ...}}

Targets: mixture <= 0.80x Kneser-Ney and the LSTM component alone <= 0.95x. The exit status
is 0 when every corpus meets them.

    python bench/quality.py [--corpus NAME ...] [--budget-seconds 600] [--valid-fraction 0.1]
                            [--cached] [--set FIELD=VALUE ...] [--save DIR] [--partner ARCH]

``--partner stream`` adds the cached stream-arch model of the same corpus and split to the
mixture as the ``lstm2`` component (its ratio is in ``components``).
"""
from __future__ import annotations

from _common import emit, logger, machine_info  # first: sets sys.path, BLAS, TF logging

import argparse
import math
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

TARGETS = {"mixture": 0.80, "lstm": 0.95}
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


log = logger()


def twofold(pred, valid: list[str]) -> float:
    """Mixture/Kneser-Ney perplexity ratio with the weights refitted on the other half."""
    import numpy as np

    from model.prediction.scoring import fit_mixture_weights
    from model.evaluation.evaluate import evaluate_text

    half = len(valid) // 2
    parts = (valid[:half], valid[half:])
    nll = base = 0.0
    n = 0
    saved = pred.mixture.weights
    try:
        for fit_on, score_on in ((parts[0], parts[1]), (parts[1], parts[0])):
            pred.mixture.weights = fit_mixture_weights(pred.mixture.fresh(), fit_on, "half of the validation split")
            out = evaluate_text(pred.bundle, score_on, predictor=pred)
            nll += out["nll"]
            base += out["baseline"]["nll"]
            n += out["tokens"]
    finally:
        pred.mixture.weights = saved
    return float(np.exp((nll - base) / n))


def global_weights_ratio(pred, valid: list[str]) -> float:
    """Mixture/Kneser-Ney ratio with one weight vector for every context (no buckets)."""
    from dataclasses import replace

    from model.evaluation.evaluate import evaluate_text

    saved = pred.mixture.weights
    try:
        w = saved
        pred.mixture.weights = replace(w, by_bucket=[list(w.overall) for _ in w.by_bucket])
        return float(evaluate_text(pred.bundle, valid, predictor=pred)["ratio"])
    finally:
        pred.mixture.weights = saved


def run_one(name: str, args: argparse.Namespace, extra: dict) -> dict:
    from model.storage import store
    from model.storage.bundle import load_bundle, save_result
    from model.config import Config
    from model.text.corpus import read_corpus
    from model.prediction.predictor import Predictor
    from model.evaluation.evaluate import evaluate_text, split_tokens

    corpus = read_corpus(name, keep_case=bool(extra.get("keep_case", False)))
    cfg = Config(valid_fraction=args.valid_fraction, **({"epochs": args.epochs} if args.epochs else {})).replace(**extra)
    result = None
    bundle = store.cached(corpus.path, cfg) if args.cached else None
    if bundle is None:
        from model.training.train import train

        last = {"t": 0.0}

        def progress(p) -> None:
            now = time.perf_counter()
            if p.kind == "start":
                log(f"[{name}] {p.message}, {p.steps} steps per epoch")
            elif p.kind == "epoch":
                vl = "-" if p.val_loss is None else f"{p.val_loss:.4f} (ppl {math.exp(p.val_loss):.1f})"
                log(f"[{name}] epoch {p.epoch}: loss {p.loss:.4f} val_loss {vl} {p.elapsed:.0f}s")
            elif p.kind == "batch" and now - last["t"] >= 30:
                last["t"] = now
                log(f"[{name}] epoch {p.epoch} step {p.step}/{p.steps} loss {p.loss:.4f} {p.elapsed:.0f}s")
            elif p.kind == "end":
                log(f"[{name}] {p.message}")

        result = train(corpus, cfg, on_progress=progress, time_limit=args.budget_seconds)
        target = Path(args.save) / name if args.save else store.cache_path(corpus.path, cfg, corpus.sha256)
        bundle = load_bundle(save_result(result, target))
    metrics = bundle.metrics
    t0 = time.perf_counter()
    from repl.models import partner_bundle

    partner = partner_bundle(bundle, args.partner)
    pred = Predictor(bundle, partner=partner)
    _, valid = split_tokens(bundle, corpus)
    out = evaluate_text(bundle, valid, predictor=pred)
    eval_seconds = time.perf_counter() - t0
    base = out["baseline"]["perplexity"]
    comps = {
        k: {"weight": round(c["weight"], 4), "perplexity": round(c["perplexity"], 3), "ratio": round(c["perplexity"] / base, 4)}
        for k, c in out["components"].items()
    }
    ratio = out["ratio"]
    lstm_ratio = comps.get("lstm", {}).get("ratio")
    ok = ratio <= TARGETS["mixture"] and lstm_ratio is not None and lstm_ratio <= TARGETS["lstm"]
    return {
        "bench": "quality",
        "figure": "corpus",
        "corpus": name,
        "mixture_ppl": round(out["perplexity"], 3),
        "baseline_ppl": round(base, 3),
        "ratio": round(ratio, 4),
        "components": comps,
        "twofold_ratio": round(twofold(pred, valid), 4),
        "global_weights_ratio": round(global_weights_ratio(pred, valid), 4),
        "targets": TARGETS,
        "pass": bool(ok),
        "top1": round(out["top1"], 4),
        "top5": round(out["top5"], 4),
        "baseline_top1": round(out["baseline"]["top1"], 4),
        "baseline_top5": round(out["baseline"]["top5"], 4),
        "valid_tokens": out["tokens"],
        "oov_rate": round(out["oov_rate"], 4),
        "vocab_size": out["model"]["vocab_size"],
        "lstm_vocab_size": out["model"]["lstm_vocab_size"],
        "train_seconds": round(metrics.get("train_seconds") or 0.0, 1),
        "trained_now": result is not None,
        "budget_seconds": args.budget_seconds,
        "epochs": metrics.get("epochs"),
        "stop_reason": metrics.get("stop_reason"),
        "eval_seconds": round(eval_seconds, 1),
        "recipe": bundle.config.to_dict(),
        "partner": None if partner is None else {"path": str(partner.path), "recipe": partner.config.to_dict()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", action="append", help="shipped corpus name or path (repeatable); default both")
    p.add_argument("--budget-seconds", type=float, default=600.0, help="wall-clock training budget per corpus (default 600)")
    p.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the recipe's); the budget or validation patience usually stops first")
    p.add_argument("--cached", action="store_true", help="score the cached model of the recipe when there is one (no training)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a Config field")
    p.add_argument("--save", metavar="DIR", help="save each trained bundle under DIR/NAME (default: the model cache)")
    p.add_argument("--partner", metavar="ARCH", help="add the cached ARCH model of the corpus to the mixture as lstm2 (e.g. stream)")
    args = p.parse_args(argv)
    if args.budget_seconds <= 0:
        raise SystemExit("--budget-seconds expects a positive number")
    extra = overrides(args.set)
    names = args.corpus or list(DEFAULT_CORPORA)
    from model.training.tfload import import_tensorflow

    import_tensorflow()
    emit(machine_info("quality", blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default")))
    ratios: dict[str, float] = {}
    ok = True
    for name in names:
        row = run_one(name, args, extra)
        emit(row)
        ratios[row["corpus"]] = row["ratio"]
        if not row["pass"]:
            ok = False
    emit({"bench": "quality", "figure": "summary", "pass": ok, "ratios": ratios, "overrides": extra})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
