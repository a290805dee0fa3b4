"""The evaluation's UI: ``story-repl eval`` (its arguments, JSON or tables), the tables of
perplexity and of keystroke savings, and ``:eval --keystrokes`` in the REPL. What they show is
computed in :mod:`model.evaluation`."""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from model.errors import StoryError
from model.evaluation import evaluate
from model.evaluation import keystrokes as ks
from repl.models import make_predictor, obtain_bundle, print_json
from repl.render import RECORDS, Fitted, bar, bar_room, data_text, formatted, notice, records, safe, titled

REPL_LIMIT = 3000  # tokens :eval --keystrokes types (the REPL waits for it)


# ---- story-repl eval --------------------------------------------------------------------
def run_eval(args: argparse.Namespace) -> int:
    """``story-repl eval``: score a FILE, or the held-out part with ``--valid`` (what is measured:
    :mod:`model.evaluation.evaluate`), and print the tables or, with ``--json``, one object."""
    order = evaluate.check_order(getattr(args, "order", evaluate.DEFAULT_ORDER))
    encoding = getattr(args, "encoding", None) or "utf-8"
    valid = bool(getattr(args, "valid", False))
    file = getattr(args, "file", None)
    if valid and file:
        raise StoryError("give a FILE to evaluate or --valid, not both")
    if not valid and not file:
        raise StoryError("eval needs a FILE to score, or --valid for the held-out part of the model's corpus")
    bundle = obtain_bundle(args)
    predictor = make_predictor(bundle, args)
    if valid:
        tokens = evaluate.validation_tokens(bundle, encoding)
        source = f"validation part of {bundle.corpus_name} (last {bundle.config.valid_fraction:g} by paragraph)"
    else:
        tokens = evaluate.text_tokens(file, bundle, encoding)
        source = str(file)
    result = evaluate.evaluate_text(bundle, tokens, order=order, encoding=encoding, predictor=predictor)
    result["source"] = source
    if getattr(args, "keystrokes", False):
        result["keystrokes"] = keystrokes_from_args(bundle, tokens, args, predictor, source)
        if getattr(args, "per_line", False):
            result["keystrokes"]["per_line"] = per_line_from_args(bundle, args, predictor, None if valid else file)
    elif getattr(args, "per_line", False):
        raise StoryError("--per-line goes with --keystrokes")
    if getattr(args, "json", False):
        print_json(result)
        return 0
    Console(highlight=False).print(eval_report(result))
    if result.get("keystrokes"):
        Console(highlight=False).print(keystroke_report(result["keystrokes"]))
    return 0


def keystrokes_from_args(bundle: Any, tokens: Sequence[str], args: Any, predictor: Any = None, source: str = "") -> dict[str, Any]:
    """``eval --keystrokes [--menu 1,3,5,10] [--limit N]`` on ``tokens`` (the text eval scores)."""
    menus = ks.parse_menus(getattr(args, "menu", None) or ",".join(map(str, ks.DEFAULT_MENUS)))
    limit = getattr(args, "limit", None)
    if limit is not None:
        if limit < 1:
            raise StoryError(f"--limit expects a positive number of tokens, got {limit}")
        tokens = list(tokens)[:limit]
    out = ks.keystrokes(bundle, tokens, menus, predictor=predictor, encoding=getattr(args, "encoding", None) or "utf-8")
    if source:
        out["source"] = source + (f", first {len(tokens):,} tokens" if limit is not None else "")
    return out


def per_line_from_args(bundle: Any, args: Any, predictor: Any, file: Any = None) -> dict[str, Any]:
    """``eval --keystrokes --per-line``: the text typed a REPL line at a time, with the story on
    and off (:mod:`model.evaluation.per_line`); the held-out lines, or ``file``'s."""
    from model.evaluation import exact, per_line
    from model.text.corpus import read_corpus

    menus = ks.parse_menus(getattr(args, "menu", None) or ",".join(map(str, ks.DEFAULT_MENUS)))
    encoding = getattr(args, "encoding", None) or "utf-8"
    limit = getattr(args, "limit", None)
    if file is None:
        target = exact.held_out_target(bundle, limit or 10**12, encoding)
    else:
        target = exact.Target.of_lines([read_corpus(file, encoding=encoding).text.splitlines()])
    lines = per_line.target_lines(target, bool(bundle.config.keep_case))
    if limit is not None:
        lines = per_line.first_tokens(lines, limit)
    out = per_line.per_line(predictor if predictor is not None else make_predictor(bundle, args), lines, menus)
    out.pop("details")
    return out


def repl_keystrokes(session: Any, bundle: Any, predictor: Any, tokens: Sequence[str], source: str):
    """``:eval --keystrokes [FILE]``: the keystroke table for the first ``REPL_LIMIT`` tokens."""
    tokens = list(tokens)
    session.out(notice("simulating a typist over the model, Kneser-Ney and Presage; this takes a minute (Ctrl-C stops it)", "dim"))
    if len(tokens) > REPL_LIMIT:
        session.out(notice(f"typing the first {REPL_LIMIT:,} of {len(tokens):,} tokens (story-repl eval --keystrokes types them all)", "dim"))
        source += f", first {REPL_LIMIT:,} tokens"
        tokens = tokens[:REPL_LIMIT]
    result = ks.keystrokes(bundle, tokens, predictor=predictor)
    result["source"] = source
    return keystroke_report(result)


# ---- rendering ------------------------------------------------------------------------
def eval_report(result: dict[str, Any], title: str = ""):
    """``eval``'s table: the predictor, each component alone and the baseline, side by side."""
    base = result["baseline"]
    model = result.get("model") or {}
    active = result.get("active") or []
    ratio = result["perplexity"] / base["perplexity"]
    rows: list[list[Any]] = [[
        data_text(f"predictor ({'+'.join(active)})"), "", Text(f"{result['perplexity']:.2f}", style="green" if ratio < 1 else "red"),
        f"{ratio:.3f}x", f"{result['top1']:.2%}", f"{result['top5']:.2%}",
    ]]
    labels = {"lstm": f"LSTM ({model.get('arch', 'lstm')}, context {model.get('context', '?')})", "ngram": "Kneser-Ney 5-gram"}
    for name, c in (result.get("components") or {}).items():
        weight = f"{c['weight']:.3f}" if c.get("active", True) else "off"
        rows.append([data_text("  " + labels.get(name, name)), weight, f"{c['perplexity']:.2f}", f"{c['perplexity'] / base['perplexity']:.3f}x", "", ""])
    rows.append([f"baseline: Kneser-Ney {base['order']}-gram", "", f"{base['perplexity']:.2f}", "1.000x", f"{base['top1']:.2%}", f"{base['top5']:.2%}"])
    table = Fitted(lambda width: titled(title, _eval_table(rows, width)))
    n_text = result.get("text_tokens", result["tokens"])
    unknown = result.get("unknown", 0)
    facts = Text(
        f"{result['tokens']:,} positions scored of {n_text:,} tokens; {unknown:,} OOV (not in the training text, "
        f"rate {result['oov_rate']:.2%}): never scored, kept as context; vocabulary {formatted(model.get('vocab_size'), '{:,}')} words",
        style="dim",
    )
    parts: list[Any] = []
    if result.get("source"):
        parts.append(data_text(f"eval: {result['source']}", style="bold"))
    parts += [table, facts]
    return Group(*parts)


EVAL_COLUMNS = (("", {"style": "bold"}), ("weight", {"justify": "right"}), ("perplexity", {"justify": "right"}),
                ("vs baseline", {"justify": "right", "style": "dim"}), ("top-1", {"justify": "right"}), ("top-5", {"justify": "right"}))


def _eval_table(rows: list[list[Any]], width: int) -> Any:
    """The eval table with the columns the width leaves room for (the ratio, then weights, go first)."""
    if width < RECORDS:
        return records(rows, [name for name, _ in EVAL_COLUMNS])
    keep = (0, 1, 2, 3, 4, 5) if width >= 72 else (0, 1, 2, 4, 5) if width >= 52 else (0, 2, 4)
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for i in keep:
        name, style = EVAL_COLUMNS[i]
        table.add_column(name, **style)
    for row in rows:
        table.add_row(*[row[i] for i in keep])
    return table


def _keystroke_chart(result: dict[str, Any], names: list[str], width: int) -> Text:
    """A bar per menu size and predictor, as wide as the terminal leaves room for (none when narrow)."""
    chart = Text()
    styles = {"model": "green", "baseline": "cyan", "presage": "magenta"}
    cells = bar_room(width, [28, 6], 30)
    if not cells:
        return chart
    for m in result["menus"]:
        for n in names:
            v = result[n][str(m)]
            chart.append(f"  menu {m:>2} {LABELS[n]:<18}", style="dim")
            chart.append(bar(max(v, 0.0), cells), style=styles[n])
            chart.append(f" {v:.1%}\n")
    return chart


LABELS = {"model": "model", "baseline": f"Kneser-Ney {ks.BASELINE_ORDER}-gram", "presage": "Presage 3-gram"}


def keystroke_report(result: dict[str, Any], title: str = ""):
    """A rich table of KSR by menu size for the three predictors, and a small bar chart."""
    names = [n for n in ks.PREDICTORS if result.get(n)]
    table = Table(title=data_text(title) if title else None, title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("menu", justify="right")
    for n in names:
        table.add_column(LABELS[n], justify="right")
    for m in result["menus"]:
        table.add_row(str(m), *[f"{result[n][str(m)]:.1%}" for n in names])
    chart = Fitted(lambda width: _keystroke_chart(result, names, width))
    parts: list[Any] = []
    if result.get("source"):
        parts.append(data_text(f"keystrokes: {result['source']}", style="bold"))
    parts += [table, chart]
    facts = (
        f"KSR = 1 - keys used / keys without prediction; {result['tokens']:,} tokens, "
        f"{result['keys_without']:,} keys without prediction (characters plus a space per token). "
        "Keys: a character 1; Alt-1…9 1; Tab/Shift-Tab per step; → the whole continuation 1; Alt-F a word 1."
    )
    parts.append(Text(facts, style="dim"))
    if result.get("presage") is None and result.get("presage_note"):
        parts.append(Text(f"Presage: {safe(result['presage_note'])}", style="yellow"))
    return Group(*parts)
