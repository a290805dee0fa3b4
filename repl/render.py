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
from typing import Any, Callable, Sequence

from rich.cells import cell_len
from rich.console import Group
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from model.storage.untrusted import visible

BAR_WIDTH = 24
MIN_BAR = 4  # a bar narrower than this is left out
GAP = 2  # cells between two columns of a table
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


class Fitted:
    """A renderable made for the width rich gives it when it is printed (``make(width)``), so a
    table can leave out its bars in a narrow terminal."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        self.make = make

    def __rich_console__(self, console, options):
        yield self.make(options.max_width)

    def __rich_measure__(self, console, options) -> Measurement:
        return Measurement.get(console, options, self.make(options.max_width))


def bar_room(width: int, columns: Sequence[int], most: int = BAR_WIDTH) -> int:
    """Cells for a bar column beside columns of these widths in ``width`` cells: up to ``most``,
    0 when fewer than ``MIN_BAR`` are left."""
    room = min(most, width - sum(columns) - GAP * len(columns))
    return room if room >= MIN_BAR else 0


def titled(title: str, body: Any) -> Any:
    """``body`` under ``title``; the title wraps at the terminal's width, not the table's."""
    return Group(data_text(title, "italic"), body) if title else body


def topk_table(predictions: Sequence[tuple[str, float]], title: str = "") -> Fitted:
    """Rank, word, probability and, where the width leaves room, a bar for each prediction."""
    return Fitted(lambda width: titled(title, _topk(predictions, width)))


def _topk(predictions: Sequence[tuple[str, float]], width: int) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("#", justify="right", style="dim")
    table.add_column("word", style="bold cyan", overflow="fold")
    table.add_column("prob", justify="right")
    words = max((cell_len(safe(w)) for w, _ in predictions), default=4)
    cells = bar_room(width, [len(str(len(predictions))), max(4, words), 6])
    if cells:
        table.add_column("", style="green", no_wrap=True)
    top = max((p for _, p in predictions), default=1.0) or 1.0
    for rank, (word, p) in enumerate(predictions, 1):
        row = [str(rank), data_text(word), f"{p * 100:.1f}%"]
        table.add_row(*row, *([bar(p / top, cells)] if cells else []))
    return table


def generation(seed_text: str, continuation: str, mode: str, copied: int | None = None, joined: bool = False) -> Text:
    """The seed (dim) followed by the generated continuation (bold), and a copy report;
    ``joined``: the continuation starts with the space that joins it, if any."""
    text = Text()
    if seed_text:
        text.append(safe(seed_text), style="dim")
        if not joined:
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


def help_table(commands: Sequence[tuple[str, str]]) -> Fitted:
    """Each command and what it does: side by side, or one under the other when narrow."""
    return Fitted(lambda width: _help(commands, width))


def _help(commands: Sequence[tuple[str, str]], width: int) -> Any:
    if width < max((cell_len(safe(u)) for u, _ in commands), default=0) + 30:
        out = Text()
        for usage, text in commands:
            out.append(safe(usage) + "\n", style="bold cyan")
            out.append(f"  {safe(text)}\n")
        out.rstrip()
        return out
    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold")
    table.add_column("command", style="bold cyan", no_wrap=True)
    table.add_column("what it does", overflow="fold")
    for usage, text in commands:
        table.add_row(data_text(usage), data_text(text))
    return table


def sample_line(context: Sequence[str], predicted: str, true: str) -> Text:
    """A sample prediction of training: ``sample: "could easily retire" → predicted "while" (true "while")``."""
    from model.text.tokenize import detokenize

    t = Text(f'sample: "{visible(detokenize(list(context)))}" → ')
    t.append(f'predicted "{visible(predicted)}"', style="green" if predicted == true else "red")
    t.append(f' (true "{visible(true)}")')
    return t


def measured_on(fitted_on: str) -> str:
    """What the weights and perplexities were measured on, as a column header says it: text
    that training read is marked so."""
    if not fitted_on:
        return ""
    return f"{fitted_on} (seen in training)" if "training text" in fitted_on else fitted_on


def components_table(rows: Sequence[tuple[str, str, str, str]], fitted_on: str = "") -> Fitted:
    """The predictor's components: state, overall weight and perplexity on ``fitted_on``, the
    text the weights were fitted on (the validation split or the training text's last tenth),
    named in the column's header, or under the table when the header would not fit."""
    where = measured_on(fitted_on)
    return Fitted(lambda width: _components(rows, where, width))


def records(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> Text:
    """Rows as lines, ``first: header value, ...``: a table for a terminal too narrow for columns."""
    out = Text()
    for row in rows:
        plain = [v.plain if isinstance(v, Text) else safe(v) for v in row]
        cells = [f"{h} {v}".strip() for h, v in zip(headers[1:], plain[1:]) if v.strip()]
        out.append(plain[0].strip(), style="bold")
        out.append(": " + ", ".join(cells) + "\n")
    out.rstrip()
    return out


RECORDS = 40  # narrower than this, a table of figures is written as lines


def _components(rows: Sequence[tuple[str, str, str, str]], where: str, width: int) -> Any:
    header = f"perplexity on the {where}" if where else "perplexity"
    if width < RECORDS:
        table = records(rows, ("component", "", "weight", "perplexity*" if where else "perplexity"))
        return Group(table, data_text(f"* on the {where}", "dim")) if where else table
    widest = [max([cell_len(safe(r[i])) for r in rows] + [len(h)]) for i, h in enumerate(("component", "state", "weight"))]
    narrow = bool(where) and sum(widest) + len(header) + 3 * GAP > width
    table = Table(show_edge=False, box=None, pad_edge=False, header_style="bold", title_justify="left")
    table.add_column("component", style="bold")
    table.add_column("state")
    table.add_column("weight", justify="right")
    table.add_column(data_text("perplexity*" if narrow else header), justify="right")
    for name, state, weight, ppl in rows:
        style = "green" if state == "on" else ("dim" if state in ("off", "not available") else "")
        table.add_row(data_text(name), data_text(state, style), data_text(weight), data_text(ppl))
    return Group(table, data_text(f"* {header}", "dim")) if narrow else table
