"""The docs tell the truth: the README's command table is COMMANDS, :help shows the same rows,
the README stays short and starts with its two commands, and every relative link resolves.

``STORY_REPL_UPDATE_DOCS=1 pytest tests/test_docs.py`` rewrites the README's command table
from ``repl.commands.COMMANDS`` instead of failing on it.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

from rich.console import Console

from repl.commands import COMMANDS, command_table_markdown, help_rows

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = (README, ROOT / "CONTRIBUTING.md", ROOT / "bench" / "README.md")
START, END = "<!-- commands:start -->", "<!-- commands:end -->"
MAX_README_CHARS = 12_000
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/story-repl"
TEST = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/ruff check . && .venv/bin/python -m pytest -q"
HEADER = f"# story-repl\n\n```bash\n{INSTALL}\n{TEST}\n```\n"


def readme_table(text: str) -> tuple[int, int]:
    """Where the generated table lies in the README: (start, end) offsets between the markers."""
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md needs one {START} and one {END}"
    start, end = text.index(START) + len(START), text.index(END)
    assert start < end, f"{START} must come before {END}"
    return start, end


def test_readme_command_table_is_generated_from_commands():
    text = README.read_text(encoding="utf-8")
    start, end = readme_table(text)
    want = command_table_markdown()
    if os.environ.get("STORY_REPL_UPDATE_DOCS") == "1":
        text = text[:start] + "\n" + want + text[end:]
        README.write_text(text, encoding="utf-8")
        start, end = readme_table(text)
    assert text[start:end].strip() == want.strip(), (
        "README.md's command table differs from repl.commands.COMMANDS; "
        "run STORY_REPL_UPDATE_DOCS=1 pytest tests/test_docs.py to regenerate it"
    )


def test_command_table_has_one_row_per_command_with_pipes_escaped():
    lines = command_table_markdown().strip().splitlines()
    assert lines[:2] == ["| command | what it does |", "|---|---|"]
    rows = lines[2:]
    assert len(rows) == len(COMMANDS)
    for row, spec in zip(rows, COMMANDS.values()):
        # Unescaped pipes are the cell borders: exactly three per row.
        assert len(re.findall(r"(?<!\\)\|", row)) == 3, row
        assert row.startswith(f"| `{spec.usage.replace('|', chr(92) + '|')}` |")


def _help_text() -> str:
    """What ``:help`` prints, as plain text (the real handler, on a stand-in session)."""
    from repl.session import Session

    printed: list = []

    class Out:
        def out(self, renderable) -> None:
            printed.append(renderable)

    Session.do_help(Out(), None)
    console = Console(file=io.StringIO(), width=1000, color_system=None, record=True)
    for renderable in printed:
        console.print(renderable)
    return console.export_text()


def test_help_shows_the_same_rows_as_the_table():
    assert help_rows() == [(spec.usage, spec.help) for spec in COMMANDS.values()]
    shown = _help_text()
    missing = [spec.usage for spec in COMMANDS.values() if spec.usage not in shown]
    assert not missing, f":help does not show these usages (rich markup?): {missing}"
    terse = [spec.help for spec in COMMANDS.values() if " ".join(spec.help.split()) not in " ".join(shown.split())]
    assert not terse, f":help does not show these help texts: {terse}"


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text) < MAX_README_CHARS, f"README.md has {len(text):,} characters; the limit is {MAX_README_CHARS:,}"
    assert text.startswith(HEADER), "README.md must start with the title and the install and test commands"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ci[-1] == TEST, ".ci/run must run exactly the README's test command"


_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def relative_links(path: Path) -> list[str]:
    text = _CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    return [t for t in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_every_relative_link_points_to_an_existing_file():
    broken = []
    for doc in DOCS:
        assert doc.exists(), f"{doc.relative_to(ROOT)} is missing"
        for target in relative_links(doc):
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            where = f"{doc.relative_to(ROOT)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where} (no such heading)")
    assert not broken, broken


def test_link_finder_sees_links_and_skips_code():
    assert slug("KSR curve") == "ksr-curve"
    assert slug("What story-repl promises") == "what-story-repl-promises"
    sample = "see [a](x.md) and `[b](y.md)`\n```\n[c](z.md)\n```\n[d](https://e.org)"
    doc = ROOT / "tests" / "_links_sample.md"
    try:
        doc.write_text(sample, encoding="utf-8")
        assert relative_links(doc) == ["x.md"]
    finally:
        doc.unlink(missing_ok=True)
