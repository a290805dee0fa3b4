"""``story-repl eval``: perplexity and next-word accuracy of a model, beside a Kneser-Ney baseline.

``story-repl eval FILE [--model DIR | --corpus PATH] [--order N] [--valid] [--json]`` scores a
text with the model and with an interpolated modified Kneser-Ney n-gram model (order 5 by
default) estimated from the model's own training text, on exactly the same positions:

* **perplexity** ``exp(-(1/N) sum log P(w_i | context))`` over the ``N`` scored positions;
* **top-1 / top-5**: the share of scored positions whose word is the most likely / among the
  five most likely next words;
* **OOV rate**: the share of the text's tokens that the model's vocabulary does not know.

With ``--valid`` the text is the held-out part of the model's corpus (the last
``valid_fraction`` of it, by paragraph, exactly as training split it).

Scored positions and unknown words
----------------------------------
The text is tokenized like the model's corpus (same case folding). A token is *unknown* when
the model's vocabulary does not have it (a literal ``<unk>`` typed in the text counts as
unknown too). The OOV rate is unknown tokens divided by all tokens of the text. Then:

* If the vocabulary has ``<unk>`` (the recipe for books drops rare words into it), every
  unknown token is encoded as ``<unk>``: as a context word it is read as ``<unk>``, and as
  the word to predict it is scored with the probability of ``<unk>``. Such positions count
  in the perplexity and are always top-1 / top-5 misses.
* If the vocabulary has no ``<unk>`` (small stories keep every word), unknown tokens are
  dropped before scoring, as the predictor does when it completes a line: they are neither
  context nor predicted, and count only in the OOV rate.
* ``<unk>`` is never a prediction: it is removed from the ranking before the top-1 / top-5
  check, for both models.
* After encoding, every position ``i >= 1`` is scored from the words before it: the LSTM
  reads the last ``context`` of them (left-padded at the start of the text), the n-gram
  model the last ``order - 1`` (lower orders at the start). The first word has no context
  and is not scored. ``tokens`` in the report is the number of scored positions.
* The baseline is estimated from the training part of the model's corpus (the file recorded
  in the model, checked against its sha256), encoded with the model's vocabulary under the
  same rule, so both models predict the same ids at the same positions.

``--json`` prints one object::

    {"tokens": N, "oov_rate": r, "perplexity": P, "top1": a, "top5": b,
     "baseline": {"kind": "kneser-ney", "order": 5, "perplexity": Pb, "top1": ab, "top5": bb},
     ...}

with further keys: ``text_tokens`` (tokens in the text), ``unknown`` (unknown tokens),
``nll`` (total negative log-likelihood in nats), ``ratio`` (model perplexity divided by the
baseline's), ``unknown_rule`` (``"unk"`` or ``"skip"``), ``source`` and ``model``.
"""
from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from model.errors import StoryError

__all__ = [
    "BaselineCache",
    "encode_tokens",
    "evaluate_text",
    "fit_baseline",
    "report",
    "run_eval",
    "score_positions",
    "training_corpus",
    "split_tokens",
    "text_tokens",
    "validation_tokens",
]

DEFAULT_ORDER = 5
MAX_ORDER = 10
BATCH = 256  # windows per forward pass: (BATCH, V) float64 logits stay small for big vocabularies


# ---- the model's own corpus ---------------------------------------------------------------
_CORPORA: "OrderedDict[tuple, Any]" = OrderedDict()
_BASELINES: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_SIZE = 2


def _remember(cache: OrderedDict, key: tuple, value: Any) -> Any:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def training_corpus(bundle, encoding: str = "utf-8"):
    """The corpus the model was trained on, read again and checked against its sha256."""
    from model.corpus import read_corpus

    info = dict(bundle.info.get("corpus") or {})
    path, sha = str(info.get("path") or ""), str(info.get("sha256") or "")
    if not path:
        raise StoryError("the model does not record which text it was trained on; the baseline and --valid need that text")
    keep_case = bool(bundle.config.keep_case)
    key = (path, sha, keep_case)
    hit = _CORPORA.get(key)
    if hit is not None:
        _CORPORA.move_to_end(key)
        return hit
    try:
        corpus = read_corpus(path, encoding=encoding, keep_case=keep_case)
    except StoryError as e:
        raise StoryError(f"cannot read the model's training text: {e}") from None
    if sha and corpus.sha256 != sha:
        raise StoryError(
            f"{corpus.path} has changed since the model was trained on it (sha256 differs); "
            "the baseline and --valid need the original text"
        )
    return _remember(_CORPORA, key, corpus)


def split_tokens(bundle, corpus) -> tuple[list[str], list[str]]:
    """(training tokens, validation tokens) of ``corpus``, split as training split them."""
    from model.data import split_paragraphs

    return split_paragraphs(corpus.paragraphs(), corpus.tokens, float(bundle.config.valid_fraction))


def validation_tokens(bundle, encoding: str = "utf-8") -> list[str]:
    """The held-out part of the model's corpus; a StoryError if the model has none."""
    vf = float(bundle.config.valid_fraction or 0.0)
    if vf <= 0:
        raise StoryError(
            "this model has no validation split (it was trained with valid-fraction 0); "
            "train with --valid-fraction F to hold out the last F of the text"
        )
    _, valid = split_tokens(bundle, training_corpus(bundle, encoding))
    if len(valid) < 2:
        raise StoryError("the model's validation part has fewer than two words; nothing to score")
    return valid


def text_tokens(spec: str, bundle, encoding: str = "utf-8") -> list[str]:
    """Tokens of a text file (or a shipped corpus name), tokenized like the model's corpus."""
    from model.corpus import read_corpus

    return read_corpus(spec, encoding=encoding, keep_case=bool(bundle.config.keep_case)).tokens


# ---- encoding and scoring ---------------------------------------------------------------
def encode_tokens(vocab, tokens: Sequence[str]) -> tuple[np.ndarray, int]:
    """(ids to score, number of unknown tokens) under the module's unknown-word rule."""
    ids, unknown = vocab.split_known(tokens)
    return np.asarray(ids, dtype=np.int64), len(unknown)


def _vocab_key(vocab) -> int:
    return hash(tuple(vocab.tokens))


def fit_baseline(bundle, order: int = DEFAULT_ORDER, encoding: str = "utf-8", corpus=None):
    """The Kneser-Ney model of ``order`` estimated from the model's training part (cached)."""
    from model.ngram import KneserNey

    corpus = corpus if corpus is not None else training_corpus(bundle, encoding)
    key = (str(corpus.path), corpus.sha256, bool(bundle.config.keep_case), float(bundle.config.valid_fraction), int(order), _vocab_key(bundle.vocab))
    hit = _BASELINES.get(key)
    if hit is not None:
        _BASELINES.move_to_end(key)
        return hit
    train_tokens, _ = split_tokens(bundle, corpus)
    ids, _ = encode_tokens(bundle.vocab, train_tokens)
    if len(ids) == 0:
        raise StoryError("the model's training part has no known words; cannot estimate the baseline")
    kn = KneserNey(int(order), vocab_size=len(bundle.vocab)).fit(ids)
    return _remember(_BASELINES, key, kn)


class BaselineCache:
    """Forget every cached corpus and baseline (tests, or after the corpus file changed)."""

    @staticmethod
    def clear() -> None:
        _CORPORA.clear()
        _BASELINES.clear()


def score_positions(predictor, ids: Sequence[int], batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Score positions ``1..len(ids)-1`` of ``ids`` with the LSTM.

    Returns ``(logp, rank)``: the natural-log probability of each position's id given the
    preceding ``context`` ids (left-padded), and its 0-based rank among the vocabulary with
    ``<unk>`` removed from the ranking (ties go to the lower id; an ``<unk>`` target gets
    rank ``V``, a miss for every k).
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    n = len(ids)
    if n < 2:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    ctx = int(predictor.context)
    V = len(predictor.vocab)
    unk = predictor.vocab.unk_id
    padded = np.concatenate([np.full(ctx, -1, dtype=np.int64), ids])
    wins = np.lib.stride_tricks.sliding_window_view(padded, ctx)[1:n]  # row j scores ids[j + 1]
    targets = ids[1:]
    logp = np.empty(n - 1, dtype=np.float64)
    rank = np.empty(n - 1, dtype=np.int64)
    cols = np.arange(V)
    for s in range(0, n - 1, batch):
        w = np.ascontiguousarray(wins[s : s + batch])
        y = targets[s : s + batch]
        z = predictor.net.logits(w + 1).astype(np.float64)  # network input ids are shifted by one
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        rows = np.arange(len(y))
        zy = z[rows, y]
        logp[s : s + len(y)] = zy - lse
        if unk is not None:
            z[:, unk] = -np.inf
        r = (z > zy[:, None]).sum(axis=1) + ((z == zy[:, None]) & (cols[None, :] < y[:, None])).sum(axis=1)
        if unk is not None:
            r[y == unk] = V
        rank[s : s + len(y)] = r
    return logp, rank


def _summary(logp: np.ndarray, rank: np.ndarray) -> dict[str, Any]:
    count = int(len(logp))
    nll = float(-logp.sum())
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
    """Model and baseline metrics on ``tokens`` (see the module docstring for the rule).

    ``predictor`` reuses a loaded :class:`model.predictor.Predictor`; ``baseline`` a fitted
    :class:`model.ngram.KneserNey` over the bundle's vocabulary (else one is estimated from
    the model's training text).
    """
    from model.predictor import Predictor

    order = _check_order(order)
    tokens = list(tokens)
    vocab = bundle.vocab
    ids, n_unknown = encode_tokens(vocab, tokens)
    if len(ids) < 2:
        raise StoryError(
            f"the text has {len(ids)} word{'s' if len(ids) != 1 else ''} the model knows; at least two are needed to score one"
        )
    pred = predictor if predictor is not None else Predictor(bundle)
    logp, rank = score_positions(pred, ids)
    out: dict[str, Any] = {
        "tokens": int(len(logp)),
        "oov_rate": n_unknown / len(tokens),
        **{k: v for k, v in _summary(logp, rank).items() if k != "tokens"},
    }
    kn = baseline if baseline is not None else fit_baseline(bundle, order, encoding)
    b = kn.evaluate(ids, start=1, exclude=vocab.unk_id)
    if b["tokens"] != out["tokens"]:  # pragma: no cover - both score positions 1..n-1
        raise StoryError("internal error: the model and the baseline scored different positions")
    out["baseline"] = {
        "kind": "kneser-ney",
        "order": int(kn.order),
        "perplexity": b["perplexity"],
        "top1": b["top1"],
        "top5": b["top5"],
        "nll": b["nll"],
    }
    out["ratio"] = out["perplexity"] / b["perplexity"]
    out["text_tokens"] = len(tokens)
    out["unknown"] = n_unknown
    out["unknown_rule"] = "unk" if vocab.unk_id is not None else "skip"
    out["model"] = {
        "path": str(bundle.path),
        "corpus": bundle.corpus_name,
        "arch": bundle.config.arch,
        "context": bundle.config.context,
        "vocab_size": len(vocab),
    }
    return out


def _check_order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= int(order) <= MAX_ORDER:
        raise StoryError(f"--order expects an integer from 1 to {MAX_ORDER}, got {order!r}")
    return int(order)


# ---- rendering ------------------------------------------------------------------------
def report(result: dict[str, Any], title: str = ""):
    """A rich renderable comparing the model with the baseline."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    base = result["baseline"]
    model = result.get("model") or {}
    label = f"LSTM ({model.get('arch', 'lstm')}, context {model.get('context', '?')})"
    table = Table(title=title or None, title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("metric", style="bold")
    table.add_column(label, justify="right")
    table.add_column(f"Kneser-Ney {base['order']}-gram", justify="right")
    table.add_column("model vs baseline", justify="right", style="dim")
    ratio = result["perplexity"] / base["perplexity"]
    better = "green" if ratio < 1 else "red"
    table.add_row("perplexity", f"[{better}]{result['perplexity']:.2f}[/{better}]", f"{base['perplexity']:.2f}", f"{ratio:.3f}x")
    for key, name in (("top1", "top-1 accuracy"), ("top5", "top-5 accuracy")):
        diff = (result[key] - base[key]) * 100
        table.add_row(name, f"{result[key]:.2%}", f"{base[key]:.2%}", f"{diff:+.2f} pts")
    n_text = result.get("text_tokens", result["tokens"])
    unknown = result.get("unknown", 0)
    rule = (
        "unknown words are scored as <unk>"
        if result.get("unknown_rule") == "unk"
        else "unknown words are skipped (the vocabulary has no <unk>)"
    )
    facts = Text(
        f"{result['tokens']:,} positions scored of {n_text:,} tokens; "
        f"{unknown:,} unknown (OOV rate {result['oov_rate']:.2%}); {rule}",
        style="dim",
    )
    parts: list[Any] = []
    if result.get("source"):
        parts.append(Text(f"eval: {result['source']}", style="bold"))
    parts += [table, facts]
    return Group(*parts)


# ---- CLI ------------------------------------------------------------------------------
def run_eval(args: argparse.Namespace) -> int:
    """``story-repl eval``: see the module docstring."""
    from repl.models import obtain_bundle, print_json

    order = _check_order(getattr(args, "order", DEFAULT_ORDER))
    encoding = getattr(args, "encoding", None) or "utf-8"
    valid = bool(getattr(args, "valid", False))
    file = getattr(args, "file", None)
    if valid and file:
        raise StoryError("give a FILE to evaluate or --valid, not both")
    if not valid and not file:
        raise StoryError("eval needs a FILE to score, or --valid for the held-out part of the model's corpus")
    bundle = obtain_bundle(args)
    if valid:
        tokens = validation_tokens(bundle, encoding)
        source = f"validation part of {bundle.corpus_name} (last {bundle.config.valid_fraction:g} by paragraph)"
    else:
        tokens = text_tokens(file, bundle, encoding)
        source = str(file)
    result = evaluate_text(bundle, tokens, order=order, encoding=encoding)
    result["source"] = source
    if getattr(args, "json", False):
        print_json(result)
        return 0
    from rich.console import Console

    Console(highlight=False).print(report(result))
    return 0
