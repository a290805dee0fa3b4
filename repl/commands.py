"""REPL commands: ``:name args`` lines parsed into small validated values.

Parsing is pure: :func:`parse` turns a line into a :class:`Command` or raises a one-line
:class:`StoryError` that names the problem (and the closest command for a typo). The
session decides what each command does.
"""
from __future__ import annotations

import codecs
import difflib
import math
import os
import re
import shlex
from dataclasses import dataclass, field

from model.config import ARCHS
from model.errors import StoryError
from model.prediction.components import registered_names


@dataclass(frozen=True)
class Spec:
    usage: str
    help: str
    args: str  # "none" | "int" | "float?" | "path" | "path?" | "word" | "word?" | "text" | "text?" | "train" | "corpus"


COMMANDS: dict[str, Spec] = {
    "help": Spec(":help", "list every command and the keys", "none"),
    "train": Spec(
        ":train [PATH] [--time-limit D] [--encoding E] [--resume]",
        "retrain on PATH (default: this corpus) in the background for at most D (90s, 10m, 1h); "
        "--resume goes on with this model",
        "train",
    ),
    "corpus": Spec(":corpus PATH [--encoding E]", "switch corpus: its cached model, or its n-gram while one trains", "corpus"),
    "stop": Spec(
        ":stop", "stop training after this batch, saving the best weights (Ctrl-C on an empty line too)", "none"
    ),
    "topk": Spec(":topk N", "show the N most likely next words in the table (the menu shows at least 10)", "int"),
    "greedy": Spec(":greedy", "generate by always taking the most likely word", "none"),
    "sample": Spec(":sample [T]", "generate by sampling at temperature T (default 1.0)", "float?"),
    "mode": Spec(":mode", "toggle between greedy and sampled generation", "none"),
    "beam": Spec(":beam N", "generate the most likely continuation by beam search of width N (1 = greedy)", "int"),
    "decode": Spec(
        ":decode [KEY=VALUE ...]",
        "show or set decoding: T, k, p, minp, rep, last-n, nr, beam; greedy, sample, off, defaults",
        "text?",
    ),
    "len": Spec(":len N", "generate N words after each line", "int"),
    "seed": Spec(":seed N", "seed sampling and the next training run", "int"),
    "arch": Spec(":arch NAME", f"switch encoder ({', '.join(ARCHS)}): load or train that model", "word"),
    "context": Spec(":context N", "switch context window: load or train that model", "int"),
    "save": Spec(":save DIR", "save the current model to DIR", "path"),
    "load": Spec(":load DIR", "load a model saved with :save or story-repl train", "path"),
    "info": Spec(
        ":info", "the corpus, vocabulary, parts and weights, accuracy, and where the model lives", "none"
    ),
    "history": Spec(":history", "show the loss and accuracy curves of the last training", "none"),
    "eval": Spec(
        ":eval [--keystrokes] [FILE]",
        "perplexity and accuracy on FILE (default: held-out text) beside Kneser-Ney; --keystrokes: keys saved",
        "path?",
    ),
    "score": Spec(":score TEXT", "colour each word of TEXT by the probability the model gave it", "text"),
    "vocab": Spec(":vocab [WORD]", "vocabulary size and coverage, or a word's rank, count and followers", "word?"),
    "components": Spec(
        ":components [LIST]",
        f"the predictor's parts ({', '.join(registered_names())}), weights and perplexities; LIST uses only those",
        "text?",
    ),
    "partner": Spec(
        ":partner [ARCH|DIR|off] [--time-limit D]",
        "a second network (lstm2): the ARCH model of this text (trained if none is cached) or DIR; off drops it",
        "train",
    ),
    "ghost": Spec(":ghost on|off", "the grey continuation after a word (→ accepts it, Alt-F one word)", "word?"),
    "repeat": Spec(":repeat on|off", "offer again words passed over in the menu (default off)", "word?"),
    "accept": Spec(":accept [N]", "keep the proposal, or its first N words (Alt-A)", "int?"),
    "retry": Spec(":retry", "another proposal: a new sample, or the next beam (Alt-R)", "none"),
    "more": Spec(":more", "keep the proposal and propose more (Enter on an empty line)", "none"),
    "undo": Spec(":undo", "step back in the story (Alt-U)", "none"),
    "redo": Spec(":redo", "step forward again (Alt-Y)", "none"),
    "alts": Spec(":alts [N]", "N proposals side by side (default 3): log p per word, copied run", "int?"),
    "take": Spec(":take K", "keep alternative K of :alts (Alt-T then K)", "int"),
    "tree": Spec(":tree", "the story's branches, the current path highlighted", "none"),
    "goto": Spec(":goto NODE", "go on from a node of :tree (a new line there branches)", "int"),
    "story": Spec(":story [on|off]", "show the story; off: each line stands alone", "word?"),
    "new": Spec(":new [TITLE]", "start a new story", "text?"),
    "stories": Spec(":stories", "list the stories", "none"),
    "quit": Spec(":quit", "leave story-repl (Ctrl-D does too)", "none"),
}
ALIASES = {"exit": "quit", "q": "quit", "h": "help", "?": "help", "k": "topk"}


@dataclass(frozen=True)
class Command:
    name: str
    arg: object = None
    options: dict = field(default_factory=dict)  # --name value options, e.g. :train's time_limit


def parse_int(text: str, what: str) -> int:
    """An integer from ``text``; also accepts ``10^9``, ``1e9`` and ``1_000``."""
    s = text.strip().replace("_", "").replace(",", "")
    m = re.fullmatch(r"([+-]?\d+)\s*(?:\^|\*\*)\s*(\d+)", s)
    try:
        if m:
            base, exp = int(m.group(1)), int(m.group(2))
            if exp > 30:
                return 10**30 if base > 0 else -(10**30)
            return base**exp
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s[:40]) if len(s) <= 40 else (10**40 if not s.startswith("-") else -(10**40))
        if re.fullmatch(r"[+-]?\d+(\.\d+)?[eE]\+?\d+", s):
            v = float(s)
            if math.isfinite(v) and v == int(v):
                return int(v)
    except (ValueError, OverflowError):
        pass
    raise StoryError(f"{what} expects a whole number, got {text.strip()!r}")


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


MAX_DURATION_HOURS = 10**5  # about 11 years: a longer limit is a typo, not a plan


def parse_duration(text: str, what: str = "--time-limit") -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1.5h`` (a bare number is seconds), above zero
    and at most :data:`MAX_DURATION_HOURS`."""
    shown = str(text).strip()
    shown = repr(shown if len(shown) <= 40 else shown[:39] + "…")
    m = _DURATION.fullmatch(str(text).strip().lower())
    if not m:
        raise StoryError(f"{what} expects a duration such as 90, 90s, 10m or 1h, got {shown}")
    seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s")[0]]
    if not seconds > 0:
        raise StoryError(f"{what} expects a duration above zero, got {shown}")
    if seconds > MAX_DURATION_HOURS * 3600:
        raise StoryError(f"{what} expects a duration of at most {MAX_DURATION_HOURS:,}h; {shown} is too long")
    return seconds


def parse_float(text: str, what: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise StoryError(f"{what} expects a number, got {text.strip()!r}") from None
    if not math.isfinite(v):
        raise StoryError(f"{what} expects a finite number, got {text.strip()!r}")
    return v


def parse_path(text: str) -> str:
    """A path argument: the rest of the line, quotes removed, ``~`` expanded."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        s = s[1:-1]
    elif "'" in s or '"' in s:
        try:
            parts = shlex.split(s)
        except ValueError:
            raise StoryError(f"unbalanced quotes in path {text.strip()!r}") from None
        s = " ".join(parts)
    return os.path.expanduser(s)


def resolve_name(word: str) -> str:
    name = ALIASES.get(word, word)
    if name in COMMANDS:
        return name
    close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.5)
    prefix = [c for c in COMMANDS if c.startswith(name)] if name else []
    hint = close[0] if close else (prefix[0] if len(prefix) == 1 else None)
    shown = word if len(word) <= 30 else word[:30] + "…"
    if hint:
        raise StoryError(f"unknown command :{shown}; did you mean :{hint}? (:help lists them)")
    raise StoryError(f"unknown command :{shown}; :help lists the commands")


def is_command(line: str) -> bool:
    return line.lstrip().startswith(":")


def parse(line: str) -> Command:
    """Parse a ``:command args`` line."""
    body = line.strip()[1:]
    word, _, rest = body.partition(" ")
    if not word.strip():
        raise StoryError("empty command; :help lists the commands")
    name = resolve_name(word.strip().lower())
    spec = COMMANDS[name]
    rest = rest.strip()
    kind = spec.args
    optional = kind.endswith("?") or kind == "train"
    kind = kind.rstrip("?")
    if kind == "none":
        if rest:
            raise StoryError(f":{name} takes no arguments (usage: {spec.usage})")
        return Command(name)
    if not rest:
        if optional:
            return Command(name)
        raise StoryError(f":{name} needs an argument (usage: {spec.usage})")
    if kind in ("int", "float", "word") and len(rest.split()) > 1:
        raise StoryError(f":{name} takes one argument, got {len(rest.split())} (usage: {spec.usage})")
    if kind == "int":
        return Command(name, parse_int(rest, f":{name}"))
    if kind == "float":
        return Command(name, parse_float(rest, f":{name}"))
    if kind == "path":
        return Command(name, parse_path(rest))
    if kind in ("train", "corpus"):
        path, options = parse_train(rest, f":{name}", OPTIONS.get(name, ("time-limit",)))
        if path is None and kind == "corpus":
            raise StoryError(f":{name} needs a path (usage: {spec.usage})")
        return Command(name, path, options)
    return Command(name, rest)


# The --options of the commands whose argument is a path with options before or after it.
OPTIONS = {"train": ("time-limit", "encoding", "resume"), "corpus": ("encoding",), "partner": ("time-limit",)}
_FLAGS = ("resume",)  # options without a value
_OPTION = re.compile(r"--([a-z][a-z-]*)(?:=(\S+))?")  # a word that is an option (a path such as --x.txt is not)


def parse_train(text: str, what: str = ":train", allowed: tuple[str, ...] = OPTIONS["train"]) -> tuple[str | None, dict]:
    """``[PATH] [--time-limit D] [--encoding E] [--resume]`` (the options in ``allowed``) of
    ``:train``, ``:corpus`` and ``:partner``. Options come before or after the path; the path is
    what lies between, as typed (spaces kept; quotes as :func:`parse_path` reads them). Returns
    (path or None, options by keyword: time_limit, encoding, resume)."""
    words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    lo, hi, options = 0, len(words), {}
    while lo < hi and _OPTION.fullmatch(words[lo][0]):  # options before the path
        lo += _take_option([w for w, _, _ in words[lo:hi]], options, what, allowed)
    while lo < hi:  # options after it: a flag, --name=value or --name value at the end
        last, before = words[hi - 1][0], words[hi - 2][0] if hi - 2 >= lo else ""
        if _OPTION.fullmatch(before) and "=" not in before and before[2:] not in _FLAGS:
            hi -= _take_option([before, last], options, what, allowed)
        elif _OPTION.fullmatch(last):
            hi -= _take_option([last], options, what, allowed)
        else:
            break
    path = text[words[lo][1] : words[hi - 1][2]] if lo < hi else ""
    return (parse_path(path) if path else None), options


def _take_option(words: list[str], options: dict, what: str, allowed: tuple[str, ...]) -> int:
    """Read the option ``words[0]`` (its value in ``words[1]`` when it needs one) into
    ``options``, checked; returns how many words it took."""
    m = _OPTION.fullmatch(words[0])
    name, value, taken = m.group(1), m.group(2), 1
    if name not in allowed:
        raise StoryError(f"{what} has no option --{name}; it takes {', '.join('--' + a for a in allowed)}")
    if name in _FLAGS:
        if value is not None:
            raise StoryError(f"{what} --{name} takes no value")
    elif value is None:
        if len(words) < 2 or _OPTION.fullmatch(words[1]):
            example = "a duration such as 90s, 10m or 1h" if name == "time-limit" else "an encoding such as latin-1"
            raise StoryError(f"{what} --{name} needs {example}")
        value, taken = words[1], 2
    key = name.replace("-", "_")
    if key in options:
        raise StoryError(f"{what} got --{name} twice")
    options[key] = _option_value(name, value, what)
    return taken


def _option_value(name: str, value: str | None, what: str):
    if name in _FLAGS:
        return True
    if name == "time-limit":
        return parse_duration(value, f"{what} --time-limit")
    try:
        codecs.lookup(value)
    except LookupError:
        raise StoryError(f"{what} --encoding: unknown encoding {value[:40]!r}; try utf-8, latin-1 or cp1252") from None
    return value


def help_rows() -> list[tuple[str, str]]:
    return [(spec.usage, spec.help) for spec in COMMANDS.values()]


def command_table_markdown() -> str:
    """The README's command table, from :data:`COMMANDS` (the same rows as ``:help``)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| command | what it does |", "|---|---|"]
    rows += [f"| `{cell(usage)}` | {cell(text)} |" for usage, text in help_rows()]
    return "\n".join(rows) + "\n"
