"""The REPL's analysis commands, rendered with rich: ``:eval``, ``:score TEXT`` and ``:vocab [WORD]``.

``:eval [--keystrokes] [FILE]`` reports on FILE, else on the model's held-out part, else on its
training text; ``:score`` colours each word by the probability the model gave it (an unknown word
is underlined and not scored, as in ``eval``); ``:vocab`` shows the vocabulary and its coverage,
or a word's rank, count and followers. The numbers come from :mod:`model.evaluation`.
"""
from __future__ import annotations

import difflib
import math
from typing import Any

from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from model.errors import StoryError
from model.evaluation import evaluate
from model.evaluation.analysis import corpus_count, followers, score_text
from model.text.tokenize import detokenize
from repl.eval_view import eval_report, repl_keystrokes
from repl.hanzi import script_hint
from repl.render import Fitted, bar, bar_room, data_text, notice, safe, titled

__all__ = ["COMMANDS", "LiveModel", "answered_by", "model_in_use", "prob_style", "run_command", "score_view", "vocab_view", "word_view"]

#: name -> (usage, help, argument kind for repl.commands.Spec)
COMMANDS = {
    "eval": (":eval [FILE]", "perplexity and top-1/top-5 accuracy on FILE (default: the held-out part) beside a Kneser-Ney baseline", "path?"),
    "score": (":score TEXT", "colour each word of TEXT by how likely the model found it; per-word surprisal and perplexity", "text"),
    "vocab": (":vocab [WORD]", "vocabulary size, coverage and top words; with WORD its rank, count and likely followers", "word?"),
}

SCORE_ROWS = 200  # rows of the :score table shown; the rest are summarised
TOP_WORDS = 20
FOLLOWERS = 10
LONG_EVAL = 20_000  # tokens above which :eval says first that it will take a while

# (lowest probability, style): green likely ... red surprising
_SCALE = ((0.25, "bold green"), (0.05, "green"), (0.01, "yellow"), (0.001, "dark_orange"), (0.0, "red"))


def prob_style(p: float) -> str:
    """The colour of a word the model gave probability ``p``."""
    for floor, style in _SCALE:
        if p >= floor:
            return style
    return "red"


class LiveModel:
    """Stands in for the bundle while a new text's first LSTM trains and the n-gram and the cache
    answer: the recipe being trained, the text read for it, no network yet."""

    trained = False

    def __init__(self, pred, corpus) -> None:
        self.config = pred.config
        self.corpus = corpus
        self.corpus_name = safe(corpus.name)
        self.corpus_sha256 = corpus.sha256
        self.path = "not saved yet (the LSTM is training)"
        self.vocab: tuple = ()  # the network's own vocabulary: none yet
        self.info = {"corpus": {"name": corpus.name, "path": str(corpus.path), "sha256": corpus.sha256, "tokens": int(corpus.n_tokens)}}
        self.metrics: dict = {}

    def training_corpus(self, encoding: str = "utf-8", need: str = ""):
        return self.corpus


def answered_by(pred) -> str:
    """Which parts answer, said while there is no trained network: ``ngram+cache (the LSTM is training)``."""
    return f"answered by {'+'.join(pred.components())} (the LSTM is training)"


def model_in_use(session) -> tuple[Any, Any]:
    """(bundle, predictor) of the session, taken from one predictor so a model swapped in by
    background training cannot pair one model's vocabulary with another's weights; while the
    first LSTM of a text trains, a :class:`LiveModel` for the n-gram and cache that answer."""
    pred = getattr(session, "predictor", None)
    if pred is None:
        raise StoryError("no model is loaded yet; wait for training or :load a model")
    bundle = getattr(pred, "bundle", None)
    if bundle is not None:
        return bundle, pred
    corpus = getattr(session, "live_corpus", None)
    if corpus is None:  # read again (from the id cache) when the session kept no copy
        from model.text.corpus import read_corpus

        corpus = read_corpus(session.corpus_spec, encoding=getattr(session, "encoding", "utf-8"), keep_case=bool(pred.config.keep_case))
    return LiveModel(pred, corpus), pred


def _need_model(session) -> tuple[Any, Any]:
    """:func:`model_in_use`, saying first which parts answer when no network is trained yet."""
    bundle, pred = model_in_use(session)
    if not getattr(bundle, "trained", True):
        session.out(notice(answered_by(pred), "cyan"))
    return bundle, pred


def run_command(session, name: str, arg: Any = None) -> None:
    """Run ``:eval``, ``:score`` or ``:vocab`` and print the result through ``session.out``."""
    if name == "eval":
        _eval(session, arg)
    elif name == "score":
        if not arg or not str(arg).strip():
            raise StoryError(":score needs some text (usage: :score TEXT)")
        _, pred = _need_model(session)
        session.out(score_view(pred, str(arg)))
    elif name == "vocab":
        bundle, pred = _need_model(session)
        k = max(1, int(getattr(session, "k", FOLLOWERS) or FOLLOWERS))
        if arg is None or not str(arg).strip():
            session.out(vocab_view(bundle, pred))
        else:
            session.out(word_view(bundle, pred, str(arg).strip(), k))
    else:
        raise StoryError(f":{name} is not an analysis command")


# ---- :eval ----------------------------------------------------------------------------
def _eval(session, path: Any) -> None:
    bundle, pred = _need_model(session)
    spec = str(path or "").strip()
    keystrokes = spec == "--keystrokes" or spec.startswith("--keystrokes ") or spec.endswith(" --keystrokes")
    if keystrokes:  # :eval --keystrokes [FILE] or :eval FILE --keystrokes
        path = (spec[len("--keystrokes") :] if spec.startswith("--keystrokes") else spec[: -len("--keystrokes")]).strip() or None
    if path:
        tokens = evaluate.text_tokens(str(path), bundle)
        source = str(path)
    elif float(bundle.config.valid_fraction or 0) > 0:
        tokens = evaluate.validation_tokens(bundle)
        source = f"validation part of {bundle.corpus_name} (last {bundle.config.valid_fraction:g} by paragraph)"
    else:
        corpus = evaluate.training_corpus(bundle)
        tokens = evaluate.split_tokens(bundle, corpus)[0]
        source = f"training text of {bundle.corpus_name} (the model has no validation split, so this measures fit, not generalisation)"
    if keystrokes:
        session.out(repl_keystrokes(session, bundle, pred, tokens, source))
        return
    if len(tokens) > LONG_EVAL:
        session.out(notice(f"scoring {len(tokens):,} words with the model and the baseline; this takes a while (Ctrl-C stops it)", "dim"))
    result = evaluate.evaluate_text(bundle, tokens, predictor=pred)
    result["source"] = source
    session.out(eval_report(result))


# ---- :score ---------------------------------------------------------------------------
def _spans(tokens: list[str], text: str) -> list[tuple[int, int]]:
    """Where each token lies in ``text`` (the detokenized tokens, so every token is found)."""
    out = []
    pos = 0
    for t in tokens:
        i = text.find(t, pos)
        if i < 0:  # pragma: no cover - detokenize keeps every token verbatim
            i = pos
        out.append((i, i + len(t)))
        pos = i + len(t)
    return out


def score_view(pred, text: str) -> Group:
    """The coloured text, the per-word table and the perplexity line."""
    res = score_text(pred, text)
    words = res["words"]
    tokens = [safe(w["word"]) for w in words]
    joined = detokenize(tokens)
    coloured = Text(joined)
    for w, (a, b) in zip(words, _spans(tokens, joined)):
        style = prob_style(w["prob"]) if w["scored"] else "dim"
        if not w["known"]:
            style += " underline"
        coloured.stylize(style, a, b)
    legend = Text("  ")
    for label, style in (("likely", "bold green"), ("", "green"), ("", "yellow"), ("", "dark_orange"), ("surprising", "red")):
        legend.append("■", style=style)
        if label:
            legend.append(f" {label} " if label == "likely" else f" {label}", style="dim")
    legend.append("   underlined: unknown word   dim: not scored", style="dim")

    table = Fitted(lambda width: _score_table(words[:SCORE_ROWS], tokens, width))
    parts: list[Any] = [coloured, legend, table]
    if len(words) > SCORE_ROWS:
        parts.append(notice(f"… {len(words) - SCORE_ROWS} more words not listed", "dim"))
    if res["scored"]:
        extra = f"; {res['unknown']} unknown" if res["unknown"] else ""
        parts.append(
            Text(
                f"perplexity {res['perplexity']:.2f} over {res['scored']} scored word{'s' if res['scored'] != 1 else ''}"
                f" (mean {math.log2(res['perplexity']):.2f} bits per word{extra})",
                style="bold",
            )
        )
    else:
        parts.append(notice("fewer than two known words: nothing to score (the first word has no context)"))
    hint = script_hint([w["word"] for w in words if not w["known"]], lambda t: t in pred.vocab.index)
    if hint:
        parts.append(notice(f"unknown words: {hint}"))
    return Group(*parts)


def _score_table(words: list[dict[str, Any]], tokens: list[str], width: int) -> Table:
    """One row per word: probability, and where the width leaves room bits, rank, a bar and a note."""
    full = width >= 48  # narrower: the word and its probability (the colours say the rest)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("word", overflow="fold")
    table.add_column("prob", justify="right")
    if full:
        table.add_column("bits", justify="right")
        table.add_column("rank", justify="right", style="dim")
    cells = bar_room(width, [len(str(len(words))), max((cell_len(t) for t in tokens), default=4), 7, 5, 5, 20], 12) if full else 0
    if cells:
        table.add_column("", no_wrap=True)
    if full:
        table.add_column("note", style="dim")
    for i, (w, shown) in enumerate(zip(words, tokens), 1):
        word_style = (prob_style(w["prob"]) if w["scored"] else "dim") + ("" if w["known"] else " underline")
        if w["scored"]:
            p = w["prob"]
            figures = [f"{p:.2%}" if p >= 0.0001 else f"{p:.1e}", f"{w['bits']:.2f}", "-" if w["rank"] is None else str(w["rank"])]
            drawn = [Text(bar(min(1.0, w["bits"] / 16.0), cells), style=prob_style(p))] if cells else []
        else:
            figures, drawn = ["-", "-", "-"], [""] if cells else []
        extra = [*figures[1:], *drawn, data_text(w["note"])] if full else []
        table.add_row(str(i), Text(shown, style=word_style), figures[0], *extra)
    return table


# ---- :vocab ---------------------------------------------------------------------------
def _corpus_or_none(bundle):
    try:
        return evaluate.training_corpus(bundle)
    except StoryError:
        return None


def _words(pred):
    """(tokens, counts) of every word of the training text (the completion vocabulary)."""
    n = pred.mixture.corpus_size
    return pred.vocab.tokens[:n], pred.vocab.counts[:n]


def vocab_view(bundle, pred=None) -> Group:
    """Size, coverage and the most frequent words of the completion vocabulary."""
    from model.prediction.predictor import Predictor

    pred = pred if pred is not None else Predictor(bundle)
    tokens, counts = _words(pred)
    total = int(sum(counts))
    lstm = bundle.vocab
    corpus_tokens = (bundle.info.get("corpus") or {}).get("tokens")
    lines = Text()
    lines.append(f"vocabulary: {len(tokens):,} words", style="bold")
    lines.append(" (every word of the training text can be completed)")
    lines.append("\n")
    lines.append(f"training text: {total:,} tokens")
    if isinstance(corpus_tokens, int) and corpus_tokens != total:
        lines.append(f" (of {corpus_tokens:,} in the corpus; the rest is held out for validation)")
    lines.append("\n")
    unk = getattr(lstm, "unk_id", None)
    if not getattr(bundle, "trained", True):
        lines.append("the LSTM is training; the n-gram and the cache answer over every word meanwhile")
    elif unk is not None:
        lstm_words = len(lstm) - 1
        share = (total - lstm.counts[unk]) / total if total else 0.0
        lines.append(
            f"the LSTM's own vocabulary: {lstm_words:,} words + <unk> ({share:.2%} of the training tokens); "
            "it reaches the rarer words through the n-gram"
        )
    else:
        lines.append(f"the LSTM's own vocabulary: the same {len(lstm):,} words (coverage 100.00%)")
    top = list(zip(tokens[:TOP_WORDS], counts[:TOP_WORDS]))
    return Group(lines, Fitted(lambda width: titled(f"top {TOP_WORDS} words", _top_table(top, total, width))))


def _top_table(top: list[tuple[str, int]], total: int, width: int) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("word", style="bold cyan", overflow="fold")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    words = max((cell_len(safe(w)) for w, _ in top), default=4)
    cells = bar_room(width, [len(str(len(top))), words, max((len(f"{c:,}") for _, c in top), default=5), 6])
    if cells:
        table.add_column("", style="green", no_wrap=True)
    most = max((c for _, c in top), default=1) or 1
    for rank, (w, c) in enumerate(top, 1):
        row = [str(rank), data_text(w), f"{c:,}", f"{c / total:.2%}" if total else "-"]
        table.add_row(*row, *([bar(c / most, cells)] if cells else []))
    return table


def word_view(bundle, pred, word: str, k: int = FOLLOWERS) -> Group:
    """Rank, count and followers of one word."""
    toks = pred.tokenize(word)
    if len(toks) != 1:
        if not toks:
            raise StoryError(f":vocab expects a word, got {safe(repr(word))}")
        raise StoryError(f":vocab expects one word, but {safe(repr(word))} is {len(toks)} tokens: {safe(' '.join(toks))}")
    tok = toks[0]
    tokens, counts = _words(pred)
    total = int(sum(counts))
    corpus = _corpus_or_none(bundle)
    i = pred.vocab.index.get(tok)
    if i is None or i >= len(tokens):
        msg = Text()
        msg.append(f"{safe(repr(tok))} is not in the training text", style="bold yellow")
        if corpus is not None:
            seen = corpus_count(corpus, tok)
            if seen:
                msg.append(f"; it occurs {seen} time{'s' if seen != 1 else ''} in the corpus (in the held-out part)")
        msg.append("; once you write it, the cache offers it" if i is None else "; you have written it, so the cache offers it")
        hint = script_hint([tok], lambda t: t in pred.vocab.index)
        if hint:
            msg.append(f"; {hint}")
        close = difflib.get_close_matches(tok, tokens, n=5, cutoff=0.7)
        if close:
            msg.append(f"\nclosest known words: {safe(', '.join(close))}", style="dim")
        return Group(msg)
    head = Text()
    head.append(safe(tok), style="bold cyan")
    c = counts[i]
    head.append(f": rank {i + 1:,} of {len(tokens):,}, ")
    head.append(f"seen {c:,} time{'s' if c != 1 else ''} in the training text ({c / total:.3%})" if total else f"count {c}")
    k = min(k, len(tokens))
    model_rows = pred.top_k([i], k)
    left = (f"the model after “{tok}”", [(w, p, None) for w, p in model_rows])
    right: Any = notice("the corpus is not readable here, so its followers are not shown", "dim")
    if corpus is not None:
        follow = followers(corpus, tok)
        n = sum(follow.values())
        rows = [(w, cnt / n, cnt) for w, cnt in follow.most_common(k)] if n else []
        right = (f"followers in {bundle.corpus_name}", rows) if rows else notice(f"“{tok}” is never followed by a word in the corpus", "dim")
    return Group(head, Fitted(lambda width: _side_by_side(left, right, width)))


SIDE_BY_SIDE = 72  # the narrowest terminal that shows the two follower tables side by side


def _side_by_side(left: tuple, right: Any, width: int) -> Any:
    """The model's and the corpus's followers side by side, or one under the other when narrow."""
    half = width if width < SIDE_BY_SIDE else (width - 4) // 2
    shown = [_follow_table(*side, half) if isinstance(side, tuple) else side for side in (left, right)]
    if width < SIDE_BY_SIDE:
        return Group(*shown)
    grid = Table.grid(padding=(0, 4))
    grid.add_column()
    grid.add_column()
    grid.add_row(*shown)
    return grid


def _follow_table(title: str, rows: list[tuple[str, float, int | None]], width: int) -> Any:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("word", style="bold cyan", overflow="fold")
    counted = any(c is not None for _, _, c in rows)
    if counted:
        table.add_column("count", justify="right")
    table.add_column("share" if counted else "prob", justify="right")
    top = max((p for _, p, _ in rows), default=1.0) or 1.0
    numbers = [len(str(len(rows))), max((cell_len(safe(w)) for w, _, _ in rows), default=4), 6]
    cells = bar_room(width, numbers + ([max(len(f"{c:,}") for _, _, c in rows)] if counted else []), 12)
    if cells:
        table.add_column("", style="green", no_wrap=True)
    for r, (w, p, c) in enumerate(rows, 1):
        row = [str(r), data_text(w)] + ([f"{c:,}"] if counted else []) + [f"{p:.1%}"]
        table.add_row(*row, *([bar(p / top, cells)] if cells else []))
    return titled(title, table)
