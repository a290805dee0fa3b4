"""What ``story-repl eval`` measures: perplexity and top-1/top-5 accuracy of the predictor and of
each component alone, beside interpolated Kneser-Ney of ``--order`` (5 by default), all on the
same positions (the command and its report are in :mod:`repl.eval_view`).

The rule: the vocabulary is every word of the model's training text; a token the training text
never had is OOV, counted in the OOV rate, never scored as the word to predict and kept as
context; the first token is not scored, and the cache starts empty. The README lists the
``--json`` keys.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from model.errors import StoryError
from model.evaluation.texts import (  # re-exported: callers use them from here too
    CORPORA,
    split_tokens,
    text_tokens,
    training_corpus,
    validation_tokens,
)
from model.lru import LRU

__all__ = [
    "BaselineCache",
    "check_order",
    "evaluate_text",
    "fit_baseline",
    "score_tokens",
    "training_corpus",
    "split_tokens",
    "text_tokens",
    "validation_tokens",
]

DEFAULT_ORDER = 5
MAX_ORDER = 10
BASELINES: LRU[tuple, Any] = LRU(2)  # (corpus, case, split, order, vocabulary size) -> KneserNey


# ---- scoring ------------------------------------------------------------------------------
def fit_baseline(bundle, order: int = DEFAULT_ORDER, encoding: str = "utf-8", corpus=None, words=None):
    """Kneser-Ney of ``order`` over the full training vocabulary ``words`` (cached)."""
    from model.prediction.ngram import KneserNey
    from model.text.vocab import Vocab

    corpus = corpus if corpus is not None else training_corpus(bundle, encoding)
    train_tokens, _ = split_tokens(bundle, corpus)
    words = words if words is not None else Vocab.build(train_tokens)
    key = (str(corpus.path), corpus.sha256, bool(bundle.config.keep_case), float(bundle.config.valid_fraction), int(order), len(words))

    def fit():
        if not train_tokens:
            raise StoryError("the model's training part has no words; cannot estimate the baseline")
        return KneserNey(int(order), vocab_size=len(words)).fit(words.encode(train_tokens))

    return BASELINES.get_or_make(key, fit)


class BaselineCache:
    """Forget every cached corpus and baseline (tests, or after the corpus file changed)."""

    @staticmethod
    def clear() -> None:
        CORPORA.clear()
        BASELINES.clear()


def score_tokens(predictor, tokens: Sequence[str], ranks: bool = True) -> dict[str, Any]:
    """Score ``tokens`` from scratch (empty cache) with the predictor's mixture, under the
    module's rule. Returns ``ids``, ``known``, ``positions`` (scored indexes into the
    tokens), per-component ``probs``, the mixture's probability ``p`` and weights ``w``
    (positions x the mixture's components, in its order), and with ``ranks`` the 0-based ranks ``rank``
    (mixture) and ``rank_ngram``."""
    from model.prediction.scoring import score_stream, text_ids
    from model.prediction.weights import mix as mix_parts

    mix = predictor.mixture.fresh()
    ids, known = text_ids(mix, list(tokens))
    res = score_stream(mix, ids, known, ranks=ranks)
    m = len(res["positions"])
    w = np.zeros((m, len(mix.names)))
    p = np.zeros(m)
    for j in range(m):
        w[j] = mix.weight_row(int(res["buckets"][j]), mix.live_at(int(res["positions"][j])))
        p[j] = mix_parts([res["probs"][name][j] for name in mix.names], w[j])
    res.update(ids=ids, known=known, p=p, w=w, mixture=mix)
    return res


def _baseline_other_order(bundle, scored: dict[str, Any], order: int, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, ranks) of the true words under a Kneser-Ney of another order."""
    from model.prediction.scoring import rank

    mix = scored["mixture"]
    kn = fit_baseline(bundle, order, encoding, words=type(mix.words)(mix.words.tokens[: mix.corpus_size], mix.words.counts[: mix.corpus_size]))
    ids = scored["ids"]
    probs, ranks = [], []
    for i in scored["positions"]:
        d = kn.distribution(ids[max(0, i - order + 1) : i].tolist())
        probs.append(d[ids[i]])
        ranks.append(rank(d, int(ids[i])))
    return np.asarray(probs), np.asarray(ranks)


def _summary(p: np.ndarray, rank: np.ndarray) -> dict[str, Any]:
    count = int(len(p))
    nll = float(-np.log(np.maximum(p, 1e-300)).sum())
    return {
        "tokens": count,
        "perplexity": math.exp(nll / count),
        "top1": float((rank < 1).mean()),
        "top5": float((rank < 5).mean()),
        "nll": nll,
    }


def evaluate_text(
    bundle,
    tokens: Sequence[str],
    order: int = DEFAULT_ORDER,
    *,
    predictor=None,
    baseline=None,
    encoding: str = "utf-8",
) -> dict[str, Any]:
    """Predictor, component and baseline metrics on ``tokens`` (see the module docstring).

    ``predictor`` reuses a loaded :class:`model.prediction.predictor.Predictor` (its active components
    are the ones scored; its cache is not used: scoring starts from an empty one)."""
    from model.prediction.components import ORDER
    from model.prediction.predictor import Predictor

    order = check_order(order)
    tokens = list(tokens)
    pred = predictor if predictor is not None else Predictor(bundle)
    if pred.mixture.ngram is None:
        raise StoryError("the model has no n-gram component (its training text cannot be read); eval needs that text")
    scored = score_tokens(pred, tokens)
    n = len(scored["positions"])
    n_unknown = int((~scored["known"]).sum())
    if n < 1:
        raise StoryError(
            f"the text has {int(scored['known'].sum())} word{'s' if scored['known'].sum() != 1 else ''} of the training text "
            "after its first; at least one scored position is needed"
        )
    out: dict[str, Any] = {"tokens": n, "oov_rate": n_unknown / len(tokens), **{k: v for k, v in _summary(scored["p"], scored["rank"]).items() if k != "tokens"}}
    if order == ORDER:
        bp, br = scored["probs"]["ngram"], scored["rank_ngram"]
    else:
        bp, br = _baseline_other_order(bundle, scored, order, encoding)
    b = _summary(bp, br)
    out["baseline"] = {"kind": "kneser-ney", "order": order, **{k: v for k, v in b.items() if k != "tokens"}}
    out["ratio"] = out["perplexity"] / b["perplexity"]
    active = list(pred.mixture.active)
    out["components"] = {
        name: {
            "weight": float(scored["w"][:, k].mean()),
            "perplexity": float(math.exp(-np.mean(np.log(np.maximum(scored["probs"][name], 1e-300))))),
            "active": name in active,
        }
        for k, name in enumerate(scored["mixture"].names)
        if name in scored["probs"]
    }
    out["active"] = active
    out["text_tokens"] = len(tokens)
    out["unknown"] = n_unknown
    out["unknown_rule"] = "oov-excluded"
    weights = pred.mixture.weights
    out["model"] = {
        "path": str(bundle.path),
        "corpus": bundle.corpus_name,
        "arch": bundle.config.arch,
        "context": bundle.config.context,
        "vocab_size": pred.mixture.corpus_size,
        "lstm_vocab_size": len(bundle.vocab),
        "weights_fitted_on": weights.fitted_on if weights is not None else None,
    }
    return out


def check_order(order: Any) -> int:
    """``--order`` as an int from 1 to ``MAX_ORDER``, or a one-line StoryError."""
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= int(order) <= MAX_ORDER:
        raise StoryError(f"--order expects an integer from 1 to {MAX_ORDER}, got {order!r}")
    return int(order)
