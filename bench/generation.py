"""Generation benchmark: does decoding loop, copy, or wander? Figures for choosing the defaults.

For each book (aesops_fables and tinyshakespeare by default; the models trained with
``story-repl train BOOK --valid-fraction 0.1``, taken from the cache, never trained here) it
takes ``--count`` seeds of ``--seed-len`` tokens from the held-out tenth of the text, and
generates ``--n`` tokens after each with every decoding variant. Each variant reports:

* ``rep4``: the repeated 4-gram rate, the share of a continuation's 4-grams that already
  occurred earlier in the same continuation (mean and max over the continuations);
* ``self_repeat``: the longest span that occurs twice in one continuation (a loop);
* ``distinct1`` / ``distinct2``: distinct words / bigrams over all words / bigrams;
* ``kn_ppl``: the perplexity of the continuations under the order-5 Kneser-Ney model of the
  training part (model/prediction/ngram.py) over the predictor's vocabulary, each scored after its seed
  (held-out words the training part lacks are dropped, as the predictor drops them);
* ``copied``: the longest run copied verbatim from the training part (model/evaluation/memorize.py).

Beside them, the same figures for the held-out text itself: every consecutive
``--n``-token stretch of it, and the true continuations of the seeds (``references``).
Ratios compare each variant with the held-out text and with a named baseline measured in
the same run (``greedy-plain``/``sample-plain``: no repetition controls, no truncation).

Targets (with the defaults): greedy ``rep4`` mean at most twice the held-out stretches' mean,
no greedy continuation repeating a span of 8 or more tokens, and sampled ``kn_ppl`` at most
1.5 times the held-out text's.

Output: JSON lines on stdout (the machine first, then per corpus a ``heldout`` record and one
``decoding`` record per variant, then a ``summary``); progress on stderr::

    nice -n 10 python bench/generation.py [--corpus NAME ...] [--count 20] [--n 200]
        [--variant NAME="greedy rep=1.3 nr=4" ...] [--only-variants] [--beam 4]
        [--components lstm,ngram,cache]
"""
from __future__ import annotations

from _common import ROOT, emit, logger, machine_info  # first: sets sys.path, BLAS, TF logging

import argparse
import math
import time
from typing import Any, Sequence

import numpy as np

DEFAULT_CORPORA = ("aesops_fables", "tinyshakespeare")
REP4_FACTOR = 2.0
SELF_REPEAT_LIMIT = 8
KN_FACTOR = 1.5


log = logger()


# ---- text statistics -------------------------------------------------------------------
def repeated_ngram_rate(seq: Sequence[int], n: int = 4) -> float:
    """Share of the n-grams of ``seq`` that already occurred earlier in ``seq``."""
    total = len(seq) - n + 1
    if total <= 0:
        return 0.0
    seen: set[tuple[int, ...]] = set()
    again = 0
    for i in range(total):
        g = tuple(seq[i : i + n])
        if g in seen:
            again += 1
        else:
            seen.add(g)
    return again / total


def longest_self_repeat(seq: Sequence[int]) -> int:
    """Length of the longest span that occurs at two different positions of ``seq``."""
    best = 0
    length = 1
    while length < len(seq):
        seen: set[tuple[int, ...]] = set()
        found = False
        for i in range(len(seq) - length + 1):
            g = tuple(seq[i : i + length])
            if g in seen:
                found = True
                break
            seen.add(g)
        if not found:
            break
        best = length
        length += 1
    return best


def distinct(seqs: Sequence[Sequence[int]], n: int) -> float:
    """Distinct n-grams over all n-grams, pooled over ``seqs``."""
    grams = [tuple(s[i : i + n]) for s in seqs for i in range(len(s) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def corpus_index(ids: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(ids)]])
    return {int(sorted_ids[s]): order[s:e] for s, e in zip(starts, ends) if sorted_ids[s] >= 0}


def summarize(seqs: list[list[int]], seeds: list[list[int]] | None, kn, to_kn, train_ids, positions) -> dict[str, Any]:
    """The figures of one set of continuations (token ids in the predictor's vocabulary)."""
    from model.evaluation.memorize import longest_run

    rep4 = [repeated_ngram_rate(s) for s in seqs]
    loops = [longest_self_repeat(s) for s in seqs]
    nll = 0.0
    count = 0
    for k, s in enumerate(seqs):
        ctx = to_kn(seeds[k]) if seeds else []
        r = kn.evaluate(np.concatenate([ctx, to_kn(s)]).astype(np.int64), start=max(1, len(ctx)))
        nll += r["nll"]
        count += r["tokens"]
    copied = [longest_run(train_ids, positions, list(s)) for s in seqs]
    return {
        "continuations": len(seqs),
        "tokens": int(sum(len(s) for s in seqs)),
        "rep4_mean": float(np.mean(rep4)),
        "rep4_max": float(np.max(rep4)),
        "self_repeat_mean": float(np.mean(loops)),
        "self_repeat_max": int(np.max(loops)),
        "distinct1": distinct(seqs, 1),
        "distinct2": distinct(seqs, 2),
        "kn_ppl": math.exp(nll / count) if count else float("nan"),
        "copied_mean": float(np.mean(copied)),
        "copied_max": int(np.max(copied)),
    }


# ---- the run -------------------------------------------------------------------------------
def variants(args: argparse.Namespace) -> list[tuple[str, Any, str]]:
    """(name, Decoding, baseline name) for every variant of this run."""
    from model.prediction.decoding import Decoding, parse_settings

    plain = dict(repeat_penalty=1.0, no_repeat_ngram=0, top_p=1.0)
    out: list[tuple[str, Any, str]] = [
        ("greedy-plain", Decoding(greedy=True, **plain), "greedy-plain"),
        ("sample-plain", Decoding(greedy=False, **plain), "sample-plain"),
    ]
    if not args.only_variants:
        out += [("greedy", Decoding(greedy=True), "greedy-plain"), ("sample", Decoding(greedy=False), "sample-plain")]
        if args.beam > 1:
            out.append((f"beam{args.beam}", Decoding(beam=args.beam), "greedy-plain"))
    for spec in args.variant:
        name, sep, text = spec.partition("=")
        if not sep:
            raise SystemExit(f"--variant expects NAME=SETTINGS, got {spec!r}")
        d = parse_settings(text, Decoding())
        out.append((name, d, "greedy-plain" if d.greedy else "sample-plain"))
    return out


def load(name: str, valid_fraction: float):
    from model.config import Config
    from model.text.corpus import resolve_path
    from model.storage.store import cached

    bundle = cached(resolve_path(name), Config(valid_fraction=valid_fraction))
    if bundle is None:
        log(f"{name}: no cached model for --valid-fraction {valid_fraction}; run story-repl train {name} --valid-fraction {valid_fraction}")
    return bundle


def run_corpus(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from model.text.corpus import read_corpus
    from model.training.data import split_paragraphs
    from model.prediction.decoding import generate_ids
    from model.prediction.ngram import KneserNey
    from model.prediction.predictor import Predictor

    bundle = load(name, args.valid_fraction)
    if bundle is None:
        return []
    pred = Predictor(bundle)
    if args.components and hasattr(pred, "components"):
        pred.components([c for c in args.components.replace(",", " ").split() if c])
    components = pred.components() if hasattr(pred, "components") else ["lstm"]
    corpus = read_corpus(bundle.corpus_path, keep_case=bool(bundle.config.keep_case))
    if corpus.sha256 != bundle.corpus_sha256:
        log(f"{name}: the corpus file changed since the model was trained")
        return []
    train_tokens, valid_tokens = split_paragraphs(corpus.paragraphs(), corpus.tokens, float(bundle.config.valid_fraction))
    words = pred.vocab  # the predictor's vocabulary: every id it can generate
    train_ids = np.asarray(words.split_known(train_tokens)[0], dtype=np.int64)
    kn = KneserNey(5, vocab_size=len(words)).fit(train_ids)

    def to_kn(seq: Sequence[int]) -> np.ndarray:
        return np.asarray(seq, dtype=np.int64)

    positions = corpus_index(train_ids)
    valid_ids, _ = words.split_known(valid_tokens)
    n, seed_len = args.n, args.seed_len
    if len(valid_ids) < seed_len + n:
        log(f"{name}: the held-out part has {len(valid_ids)} tokens, fewer than {seed_len + n}")
        return []
    starts = np.linspace(seed_len, len(valid_ids) - n, args.count).astype(int)
    seeds = [valid_ids[s - seed_len : s] for s in starts]
    refs = [valid_ids[s : s + n] for s in starts]
    stretches = [valid_ids[i : i + n] for i in range(0, len(valid_ids) - n + 1, n)]
    held = summarize(stretches, None, kn, to_kn, train_ids, positions)
    held_all = kn.evaluate(to_kn(valid_ids))
    held["kn_ppl"] = held_all["perplexity"]  # the whole held-out text, each word after the ones before it
    ref = summarize(refs, seeds, kn, to_kn, train_ids, positions)
    base = {
        "bench": "generation",
        "figure": "heldout",
        "corpus": name,
        "model": str(bundle.path),
        "context": int(bundle.config.context),
        "vocab": len(words),
        "components": components,
        "heldout_tokens": len(valid_ids),
        "stretch": n,
        "seed_len": seed_len,
        "stretches": held,
        "references": ref,
    }
    emit(base)
    records = [base]
    results: dict[str, dict[str, Any]] = {}
    for vname, dec, baseline in variants(args):
        t0 = time.perf_counter()
        seqs = []
        for k, seed in enumerate(seeds):
            rng = np.random.default_rng(args.seed + k)
            seqs.append(list(generate_ids(pred.distribution, pred._ban, seed, n, dec, rng)))
        secs = time.perf_counter() - t0
        fig = summarize(seqs, seeds, kn, to_kn, train_ids, positions)
        rec: dict[str, Any] = {
            "bench": "generation",
            "figure": "decoding",
            "corpus": name,
            "variant": vname,
            "short": dec.short(),
            "decoding": dec.to_dict(),
            **fig,
            "rep4_vs_heldout": fig["rep4_mean"] / held["rep4_mean"] if held["rep4_mean"] else None,
            "kn_ppl_vs_heldout": fig["kn_ppl"] / held["kn_ppl"],
            "seconds": round(secs, 2),
            "ms_per_token": round(1000 * secs / (n * len(seeds)), 2),
            "example": _example(words, seeds[0], seqs[0]),
        }
        if baseline in results and baseline != vname:
            b = results[baseline]
            rec["baseline"] = baseline
            rec["rep4_vs_baseline"] = fig["rep4_mean"] / b["rep4_mean"] if b["rep4_mean"] else None
            rec["kn_ppl_vs_baseline"] = fig["kn_ppl"] / b["kn_ppl"]
        if dec.greedy:
            rec["targets"] = {
                "rep4_at_most_2x_heldout": fig["rep4_mean"] <= REP4_FACTOR * held["rep4_mean"],
                "no_span_of_8_repeated": fig["self_repeat_max"] < SELF_REPEAT_LIMIT,
            }
        else:
            rec["targets"] = {"kn_ppl_at_most_1.5x_heldout": fig["kn_ppl"] <= KN_FACTOR * held["kn_ppl"]}
        rec["pass"] = all(rec["targets"].values())
        results[vname] = fig
        emit(rec)
        records.append(rec)
        log(f"{name} {vname:14s} rep4 {fig['rep4_mean']:.3f} loop {fig['self_repeat_max']:3d} "
            f"d2 {fig['distinct2']:.2f} kn {fig['kn_ppl']:.0f} copied {fig['copied_max']} ({secs:.0f}s)")
    return records


def _example(words, seed: Sequence[int], cont: Sequence[int]) -> str:
    from model.text.tokenize import detokenize

    return detokenize(words.decode(list(seed))) + " ‖ " + detokenize(words.decode(list(cont[:60])))


def _git_state() -> str | None:
    """The commit measured, with "-dirty" when the working tree has changes."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", action="append", help="book to measure (repeatable; default aesops_fables and tinyshakespeare)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--count", type=int, default=20, help="seeds (continuations per variant)")
    p.add_argument("-n", "--n", type=int, default=200, help="tokens per continuation")
    p.add_argument("--seed-len", type=int, default=16, help="held-out tokens before each continuation")
    p.add_argument("--seed", type=int, default=42, help="sampling seed of the first continuation (+1 for each next)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=SETTINGS",
                   help='an extra decoding, e.g. rep13="greedy rep=1.3 nr=4" (see :decode in the REPL)')
    p.add_argument("--only-variants", action="store_true", help="skip the default greedy/sample variants")
    p.add_argument("--beam", type=int, default=0, help="also measure beam search of this width")
    p.add_argument("--components", help="predictor components to use (default: all)")
    args = p.parse_args(argv)
    names = args.corpus or list(DEFAULT_CORPORA)
    emit(machine_info("generation", with_tf=False, corpora=names, count=args.count, n=args.n, git=_git_state()))
    ok = True
    ran = 0
    for name in names:
        recs = run_corpus(name, args)
        ran += bool(recs)
        ok = ok and all(r.get("pass", True) for r in recs if r.get("variant") in ("greedy", "sample", f"beam{args.beam}"))
    emit({"bench": "generation", "figure": "summary", "corpora_measured": ran, "pass": ok and ran == len(names)})
    return 0 if ok and ran == len(names) else 1


if __name__ == "__main__":
    raise SystemExit(main())
