"""Rich renderables built from plain data: top-k tables, generated text, charts, info panels.

Nothing here reads the model or the terminal; each function takes data and returns a
renderable, so tests render into ``Console(file=io.StringIO(), width=60)`` and read text.
Every string that may come from a file (a word, a corpus name, a path, a metric) goes through
:func:`data_text` or :func:`safe`: its control characters are written out, so it can never
drive the terminal, and it is never read as rich markup (a ``[`` in a word is just a ``[``).
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Sequence

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from model.storage.untrusted import visible

BAR_WIDTH = 24
BLOCKS = " ▏▎▍▌▋▊▉█"


def safe(text: object) -> str:
    """``text`` with its control characters written out and its line breaks kept: for a
    message, which may quote a name or a path from a file."""
    return "\n".join(visible(line) for line in str(text).split("\n"))


def data_text(value: object, style: str = "") -> Text:
    """A string from data (a word, a name, a path) as a table cell or title: control characters
    written out, never read as markup."""
    return Text(safe(value), style=style)


def formatted(value: Any, fmt: str = "{:.4f}", missing: str = "?") -> str:
    """``value`` formatted with ``fmt`` when it is a finite number, else ``missing`` (a
    metrics file may hold anything)."""
    return fmt.format(value) if _finite(value) else missing


def _finite(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (eighth-cell resolution)."""
    fraction = 0.0 if not math.isfinite(fraction) else min(max(fraction, 0.0), 1.0)
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def topk_table(predictions: Sequence[tuple[str, float]], title: str = "") -> Table:
    """Rank, word, probability and a bar for each prediction."""
    table = Table(title=data_text(title) if title else None, title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("word", style="bold cyan")
    table.add_column("prob", justify="right")
    table.add_column("", style="green", no_wrap=True)
    top = max((p for _, p in predictions), default=1.0) or 1.0
    for rank, (word, p) in enumerate(predictions, 1):
        table.add_row(str(rank), data_text(word), f"{p * 100:.1f}%", bar(p / top))
    return table


def generation(seed_text: str, continuation: str, mode: str, copied: int | None = None) -> Text:
    """The seed (dim) followed by the generated continuation (bold), and a copy report."""
    text = Text()
    if seed_text:
        text.append(safe(seed_text), style="dim")
        text.append(" ")
    text.append(safe(continuation), style="bold")
    text.append(f"\n  [{safe(mode)}]", style="dim italic")
    if copied is not None:
        text.append(f"  longest copied run: {copied} words", style="dim italic")
    return text


def notice(message: str, style: str = "yellow") -> Text:
    return Text(safe(message), style=style)


def error(message: str) -> Text:
    return Text(f"error: {safe(message)}", style="bold red")


SPARK = "▁▂▃▄▅▆▇█"


def chart(values: Sequence[float], width: int = 48, height: int = 6, label: str = "", fmt: str = "{:.3f}") -> Text:
    """A small terminal line chart of ``values`` (resampled to ``width`` columns); anything in
    ``values`` that is not a finite number is left out."""
    epochs = len(values) if isinstance(values, (list, tuple)) else 0
    vals = _numbers(values)
    out = Text()
    if not vals:
        out.append(f"{label}: no data", style="dim")
        return out
    if len(vals) > width:
        step = len(vals) / width
        vals = [vals[min(len(vals) - 1, int(i * step))] for i in range(width)] + [vals[-1]]
        vals = vals[:width]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    levels = height * 8
    cols = [int(round((v - lo) / span * (levels - 1))) for v in vals]
    top_label, bottom_label = fmt.format(hi), fmt.format(lo)
    pad = max(len(top_label), len(bottom_label))
    out.append(f"{label}\n", style="bold")
    for row in range(height - 1, -1, -1):
        edge = top_label if row == height - 1 else bottom_label if row == 0 else ""
        out.append(edge.rjust(pad) + " ┤", style="dim")
        line = []
        for c in cols:
            filled = c - row * 8 + 1
            line.append("█" if filled >= 8 else SPARK[filled - 1] if filled > 0 else " ")
        out.append("".join(line), style="cyan")
        out.append("\n")
    out.append(" " * pad + " └" + "─" * len(cols) + "\n", style="dim")
    out.append(" " * (pad + 2) + f"epoch 1 … {epochs}", style="dim")
    return out


def _numbers(values: Any) -> list[float]:
    """The finite numbers of ``values`` ([] when it is not a list of them)."""
    if not isinstance(values, (list, tuple)):
        return []
    return [float(v) for v in values if _finite(v)]


def history_charts(history: Any) -> Group:
    """Loss, validation loss and accuracy by epoch; a series that is missing or not a list of
    numbers is left out."""
    history = history if isinstance(history, dict) else {}
    parts = []
    for key, label, fmt in (("loss", "loss", "{:.3f}"), ("val_loss", "validation loss", "{:.3f}"), ("accuracy", "accuracy", "{:.1%}")):
        if _numbers(history.get(key)):
            parts.append(chart(history[key], label=label, fmt=fmt))
    if not parts:
        parts.append(Text("no training history for this model", style="dim"))
    return Group(*parts)


def info_panel(rows: Sequence[tuple[str, str]], title: str = "model") -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(data_text(k), data_text(v))
    return Panel(table, title=data_text(title), title_align="left", expand=False)


def help_table(commands: Sequence[tuple[str, str]]) -> Table:
    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    table.add_column("command", style="bold cyan", no_wrap=True)
    table.add_column("what it does", overflow="fold")
    for usage, text in commands:
        table.add_row(data_text(usage), data_text(text))
    return table


def sample_line(context: Sequence[str], predicted: str, true: str) -> Text:
    """The seed tutorial's sample line: ['could', 'easily', 'retire'] - [while] vs [while]."""
    context = [visible(w) for w in context]
    predicted, true = visible(predicted), visible(true)
    t = Text(f"{context} - [{predicted}] vs [{true}]")
    t.stylize("green" if predicted == true else "red", len(str(context)) + 3)
    return t


def components_table(rows: Sequence[tuple[str, str, str, str]], fitted_on: str = "") -> Table:
    """The predictor's components: state, overall weight and perplexity on the held-out text."""
    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold", title_justify="left")
    table.add_column("component", style="bold")
    table.add_column("state")
    table.add_column("weight", justify="right")
    table.add_column("held-out perplexity", justify="right")
    for name, state, weight, ppl in rows:
        style = "green" if state == "on" else ("dim" if state in ("off", "not available") else "")
        table.add_row(data_text(name), data_text(state, style), data_text(weight), data_text(ppl))
    return table
