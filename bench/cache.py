"""Which cache: a unigram cache of recent tokens, or a neural cache over the LSTM's states?

The neural cache (Grave et al., 2017, "Improving neural language models with a continuous
cache") scores the next word by how much the current LSTM state looks like the states that
preceded each recent token: p(w) ∝ Σ_{i: w_i = w} exp(θ h_t · h_{i-1}) over the last ``N``
positions. This bench scores the held-out tenth of each book with the mixture's components
(LSTM, Kneser-Ney, and the caches), fits the mixture weights by EM on one half of the
held-out text and measures the perplexity on the other half (both ways), for:

- lstm + ngram (no cache), lstm + ngram + unigram cache (what story-repl uses),
- lstm + ngram + neural cache (θ chosen on the fitting half), lstm + ngram + both.

JSON lines on stdout: the machine, one record per corpus with each variant's perplexity and
its ratio to the order-5 Kneser-Ney on the same positions.

    python bench/cache.py [--corpus NAME ...] [--valid-fraction 0.1] [--window 500]

It uses the cached model of the default book recipe (``story-repl train NAME
--valid-fraction 0.1``), and the windowed ``lstm`` arch.
"""
from __future__ import annotations

from _common import emit, machine_info  # first: sets sys.path, BLAS, TF logging

import argparse
import math
import sys

import numpy as np

THETAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def hidden_states(neural, ids: np.ndarray, positions: np.ndarray, batch: int = 256) -> np.ndarray:
    """(len(positions), U): the LSTM's final state after the words before each position."""
    net = neural.net
    if net.config.arch != "lstm":
        raise SystemExit(f"the neural cache bench reads the lstm arch's state; this model is {net.config.arch}")
    rows = []
    for s in range(0, len(positions), batch):
        x = np.zeros((min(batch, len(positions) - s), neural.context), np.int64)
        for r, i in enumerate(positions[s : s + batch]):
            key = neural.window(ids[max(0, i - 4 * neural.context) : i])
            if key:
                x[r, -len(key) :] = np.asarray(key) + 1
        xs = net.w["embedding"][x]
        _, h = net._lstm("lstm", xs, x != 0)
        rows.append(h.astype(np.float64))
    return np.concatenate(rows)


def neural_cache_probs(h: np.ndarray, targets: np.ndarray, theta: float, window: int, vocab: int) -> np.ndarray:
    """p_cache(target_t) for every scored position t, from the states of earlier positions.

    State t predicted target t; the cache at t holds (h_i, target_i) for the ``window``
    scored positions before t. Positions with an empty cache get the uniform 1/V."""
    out = np.empty(len(h))
    for t in range(len(h)):
        lo = max(0, t - window)
        if t == lo:
            out[t] = 1.0 / vocab
            continue
        s = theta * (h[lo:t] @ h[t])
        s -= s.max()
        e = np.exp(s)
        p = e[targets[lo:t] == targets[t]].sum() / e.sum()
        out[t] = 0.999 * p + 0.001 / vocab  # the same floor as the unigram cache
    return out


def em(p: np.ndarray, steps: int = 60) -> np.ndarray:
    from model.prediction.weights import em_weights

    return em_weights(p, steps)


def twofold_ppl(p: np.ndarray, buckets: np.ndarray, n_buckets: int) -> float:
    """Perplexity with per-bucket EM weights fitted on the other half (both ways)."""
    from model.prediction.weights import fit_weights

    half = len(p) // 2
    nll = 0.0
    for fit, score in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        w = fit_weights(p[fit], buckets[fit], [str(i) for i in range(p.shape[1])], n_buckets)
        rows = np.asarray([w.by_bucket[b] for b in buckets[score]])
        nll -= np.log(np.maximum((p[score] * rows).sum(1), 1e-300)).sum()
    return math.exp(nll / len(p))


def run_one(name: str, args) -> dict:
    from model.storage import store
    from model.config import Config
    from model.text.corpus import read_corpus
    from model.prediction.scoring import score_stream, text_ids
    from model.prediction.predictor import Predictor
    from model.evaluation.evaluate import split_tokens

    corpus = read_corpus(name)
    bundle = store.cached(corpus.path, Config(valid_fraction=args.valid_fraction))
    if bundle is None:
        raise SystemExit(f"no cached model for {name}; run: story-repl train {name} --valid-fraction {args.valid_fraction}")
    pred = Predictor(bundle)
    _, valid = split_tokens(bundle, corpus)
    mix = pred.mixture.fresh()
    ids, known = text_ids(mix, valid)
    res = score_stream(mix, ids, known)
    pos = res["positions"]
    targets = ids[pos]
    h = hidden_states(mix.neural, ids, pos)
    base = {c: res["probs"][c] for c in ("lstm", "ngram", "cache")}
    kn_ppl = math.exp(-np.mean(np.log(base["ngram"])))
    n_b = mix.ngram.kn.order
    half = len(pos) // 2
    # θ chosen on the first half, mixing with lstm + ngram
    best = None
    for theta in THETAS:
        nc = neural_cache_probs(h[:half], targets[:half], theta, args.window, len(mix.words))
        p = np.stack([base["lstm"][:half], base["ngram"][:half], nc], axis=1)
        w = em(p)
        ppl = math.exp(-np.mean(np.log((p * w).sum(1))))
        if best is None or ppl < best[1]:
            best = (theta, ppl)
    theta = best[0]
    ncache = neural_cache_probs(h, targets, theta, args.window, len(mix.words))
    variants = {
        "lstm+ngram": np.stack([base["lstm"], base["ngram"]], axis=1),
        "lstm+ngram+unigram_cache": np.stack([base["lstm"], base["ngram"], base["cache"]], axis=1),
        "lstm+ngram+neural_cache": np.stack([base["lstm"], base["ngram"], ncache], axis=1),
        "lstm+ngram+both_caches": np.stack([base["lstm"], base["ngram"], base["cache"], ncache], axis=1),
    }
    out = {"bench": "cache", "figure": "corpus", "corpus": name, "positions": int(len(pos)), "kn_ppl": round(kn_ppl, 3), "theta": theta, "window": args.window}
    for k, p in variants.items():
        ppl = twofold_ppl(p, res["buckets"], n_b)
        out[k] = {"ppl": round(ppl, 3), "ratio": round(ppl / kn_ppl, 4)}
    out["neural_cache_alone_ppl"] = round(math.exp(-np.mean(np.log(ncache))), 2)
    out["unigram_cache_alone_ppl"] = round(math.exp(-np.mean(np.log(base["cache"]))), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", action="append", help="shipped corpus (repeatable); default tinyshakespeare and aesops_fables")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--window", type=int, default=500, help="positions the neural cache remembers")
    args = p.parse_args(argv)
    emit(machine_info("cache", with_tf=False))
    for name in args.corpus or ["aesops_fables", "tinyshakespeare"]:
        emit(run_one(name, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
