"""Keystroke savings against perplexity: how much better must the predictor get to save more keys?

For each corpus it loads the cached default model (and, with ``--partner ARCH``, the cached
model of that arch as the ``lstm2`` component), then for each set of components (the n-gram
alone, the n-gram with the caches, each network alone, the mixtures) it

* refits the mixture weights of exactly that set by EM on the validation split, as the
  product fits its own (the same positions, the same n-gram buckets);
* scores the first ``--tokens`` tokens of the held-out tenth: perplexity, and its ratio to
  the order-5 Kneser-Ney baseline on the same positions;
* types those tokens with the typist of :mod:`model.evaluation.keystrokes` through the REPL as it is
  (menu ``--menu``), and the baseline too, once.

Then it fits, over the sets whose perplexity is no worse than the baseline's, a straight line of the
keystroke gain over the baseline (points of KSR) against the log of the perplexity ratio, and
says where that line puts a given gain (``--gain``, default the issue's 5 points): the
perplexity ratio a predictor would need. The line is an extrapolation from what was measured
and is labelled so.

Output: JSON lines on stdout, the first describing the machine; progress on stderr.

    python bench/ksr_curve.py [--corpus NAME ...] [--partner ARCH] [--tokens 3000] [--menu 5] [--gain 5]
"""
from __future__ import annotations

from _common import emit, logger, machine_info  # first: sets sys.path, BLAS, TF logging

import argparse
import math
import os
import sys
import time

DEFAULT_CORPORA = ("aesops_fables", "tinyshakespeare")
SETS = (
    ("ngram",),
    ("ngram", "cache"),
    ("lstm",),
    ("lstm", "ngram"),
    ("lstm", "ngram", "cache"),
    ("lstm", "ngram", "cache", "ncache"),
)
PARTNER_SETS = (
    ("lstm2",),
    ("lstm2", "ngram", "cache"),
    ("lstm2", "ngram", "cache", "ncache"),
    ("lstm", "lstm2", "ngram"),
    ("lstm", "lstm2", "ngram", "cache", "ncache"),
)


log = logger("ksr_curve")


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x; returns (a, b, r²)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    syy = sum((y - my) ** 2 for y in ys)
    b = sxy / sxx if sxx else 0.0
    a = my - b * mx
    r2 = (sxy * sxy / (sxx * syy)) if sxx and syy else 0.0
    return a, b, r2


def bench_corpus(corpus: str, args) -> list[dict]:
    import numpy as np

    from model.prediction.scoring import heldout_scores
    from model.prediction.weights import fit_weights
    from model.prediction.predictor import Predictor
    from model.evaluation import keystrokes as ks
    from model.evaluation.evaluate import evaluate_text, validation_tokens
    from repl.models import partner_bundle

    from keystrokes import load  # the cached model of the corpus (bench/keystrokes.py)

    bundle = load(corpus, args.valid_fraction)
    partner = partner_bundle(bundle, args.partner)
    predictor = Predictor(bundle, partner=partner)
    mix = predictor.mixture
    valid = validation_tokens(bundle)
    tokens = valid[: args.tokens]
    menus = (int(args.menu),)
    fitted = heldout_scores(mix, valid)
    n_buckets = mix.ngram.kn.order

    t0 = time.perf_counter()
    with ks.contenders(bundle, predictor, ("baseline",), menus) as found:
        base = ks.run(ks.Contenders({"baseline": found.runs["baseline"]}, None, None), tokens, menus, ks.NOW)
    base_ksr = base["baseline"][str(args.menu)]
    emit({"bench": "ksr_curve", "figure": "baseline", "corpus": corpus, "kind": "kneser-ney", "order": 5,
          "menu": args.menu, "ksr": round(base_ksr, 4), "tokens": len(tokens), "seconds": round(time.perf_counter() - t0, 1)})

    rows = []
    sets = list(SETS) + (list(PARTNER_SETS) if partner is not None else [])
    for names in sets:
        t0 = time.perf_counter()
        p = np.stack([fitted["probs"][c] for c in names], axis=1)
        w = fit_weights(p, fitted["buckets"], list(names), n_buckets, "validation split")
        mix.weights = w
        predictor.components(list(names))
        ev = evaluate_text(bundle, tokens, predictor=predictor)
        res = ks.run(ks.Contenders({"model": (predictor, True)}, None, None), tokens, menus, ks.NOW)
        ksr = res["model"][str(args.menu)]
        row = {"bench": "ksr_curve", "figure": "point", "corpus": corpus, "components": list(names),
               "perplexity": round(ev["perplexity"], 2), "baseline_perplexity": round(ev["baseline"]["perplexity"], 2),
               "ratio": round(ev["ratio"], 4), "menu": args.menu, "ksr": round(ksr, 4),
               "gain_points": round(100 * (ksr - base_ksr), 2), "top5": round(ev["top5"], 4),
               "weights": {n: round(v, 3) for n, v in zip(w.names, w.overall)}, "seconds": round(time.perf_counter() - t0, 1)}
        emit(row)
        log(f"{corpus} {'+'.join(names)}: ratio {ev['ratio']:.3f}, KSR {ksr:.2%} ({row['gain_points']:+.2f})")
        rows.append(row)

    better = [r for r in rows if r["ratio"] <= 1.0 + 1e-9]
    out = {"bench": "ksr_curve", "figure": "fit", "corpus": corpus, "menu": args.menu, "points": len(better),
           "model": "gain_points = a + b * ln(perplexity ratio to Kneser-Ney), least squares over the points at or below ratio 1"}
    if len(better) >= 3:
        a, b, r2 = fit_line([math.log(r["ratio"]) for r in better], [r["gain_points"] for r in better])
        out.update(a=round(a, 3), b=round(b, 3), r2=round(r2, 3))
        if b < 0:
            need = math.exp((args.gain - a) / b)
            out["extrapolated"] = {"gain_points": args.gain, "ratio_needed": round(need, 4),
                                   "perplexity_needed": round(need * better[0]["baseline_perplexity"], 1)}
    emit(out)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", action="append", help="corpus name (repeatable; default aesops_fables and tinyshakespeare)")
    p.add_argument("--partner", metavar="ARCH", help="also measure the sets with the cached ARCH model as lstm2 (e.g. stream)")
    p.add_argument("--tokens", type=int, default=3000, help="tokens of the held-out part to type (default 3000)")
    p.add_argument("--menu", type=int, default=5, help="menu size (default 5)")
    p.add_argument("--gain", type=float, default=5.0, help="gain over the baseline, in KSR points, to extrapolate to (default 5)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    args = p.parse_args(argv)
    emit(machine_info("ksr_curve", with_tf=False, blas_threads=os.environ.get("OPENBLAS_NUM_THREADS")))
    for corpus in args.corpus or DEFAULT_CORPORA:
        bench_corpus(corpus, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
