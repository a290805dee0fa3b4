"""Caches that may have been damaged repair themselves: the on-disk id cache is verified when it
is opened and rebuilt from the text with a notice; a Presage bridge that does not run is compiled
again once, and if that fails the Presage row says why while the rest of the evaluation runs; the
bridge's source ships in the wheel.

Presage, libpresage-dev and g++ are not needed: the tests put fake bridge programs where the
compiled one is kept, and replace the compiler and text2ngram, so they check the error handling
around the bridge, not Presage."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import CAT, ROOT
from model.evaluation import keystrokes as ks
from model.errors import StoryError
from model.evaluation import presage
from model.text import ids
from model.text.corpus import read_corpus
from model.text.tokenize import tokenize
from repl import cli

# ---- the id cache ---------------------------------------------------------------------------------


@pytest.fixture
def cached_text(tmp_path, monkeypatch):
    """A text large enough to be cached (the threshold lowered to keep it small), read once."""
    monkeypatch.setattr(ids, "CACHE_MIN_BYTES", 1 << 16)
    fables = (ROOT / "corpora" / "aesops_fables.txt").read_text(encoding="utf-8")
    path = tmp_path / "fables.txt"
    path.write_text(fables + "\n\n" + fables.replace("the", "a").upper(), encoding="utf-8")
    first = ids.stream_ids(path)
    assert first.cache_dir is not None and not first.notice
    return path


def entry_of(path: Path) -> Path:
    return ids.cache_root() / ids.cache_key(ids.file_digest(path), "utf-8", False)


def assert_fresh(path: Path, s: ids.Streamed) -> None:
    """``s`` is what tokenizing ``path`` again, without the cache, gives."""
    fresh = ids.stream_ids(path, use_cache=False, workers=1)
    assert s.words == fresh.words and np.array_equal(s.ids, fresh.ids)
    assert np.array_equal(s.counts, fresh.counts) and np.array_equal(s.paragraph_starts, fresh.paragraph_starts)


def test_random_ids_are_rebuilt_with_a_notice(cached_text):
    entry = entry_of(cached_text)
    size = os.path.getsize(entry / "ids.int32")
    rng = np.random.default_rng(0)
    (entry / "ids.int32").write_bytes(rng.integers(-(2**31), 2**31, size // 4, dtype=np.int64).astype(np.int32).tobytes())
    s = ids.stream_ids(cached_text)
    assert_fresh(cached_text, s)
    assert str(entry) in s.notice and "outside" in s.notice and "rebuilt it from fables.txt" in s.notice
    assert "\n" not in s.notice
    assert not ids.stream_ids(cached_text).notice  # repaired: used as it is from now on


def test_zeroed_ids_are_rebuilt(cached_text):
    entry = entry_of(cached_text)
    (entry / "ids.int32").write_bytes(bytes(os.path.getsize(entry / "ids.int32")))
    c = read_corpus(cached_text)  # the way training reads it
    assert_fresh(cached_text, ids.Streamed(c.ids, c.words, c.counts, c.first, c.paragraph_starts, c.sha256))
    assert "word counts" in c.notice and len(set(np.asarray(c.ids[:1000]).tolist())) > 1


def test_a_changed_word_is_rebuilt(cached_text):
    entry = entry_of(cached_text)
    words = (entry / "words.txt").read_text(encoding="utf-8").split("\n")
    words[3] = "wolfish"
    (entry / "words.txt").write_text("\n".join(words), encoding="utf-8")
    s = ids.stream_ids(cached_text)
    assert_fresh(cached_text, s)
    assert "wolfish" not in s.words and "digest" in s.notice


def test_a_changed_meta_json_is_rebuilt(cached_text):
    entry = entry_of(cached_text)
    meta = json.loads((entry / "meta.json").read_text())
    meta["n_paragraphs"] += 1
    (entry / "meta.json").write_text(json.dumps(meta))
    s = ids.stream_ids(cached_text)
    assert_fresh(cached_text, s)
    assert "digest" in s.notice


def test_a_key_directory_replaced_by_a_file_is_repaired(cached_text):
    entry = entry_of(cached_text)
    shutil.rmtree(entry)
    entry.write_text("not a cache")
    s = ids.stream_ids(cached_text)
    assert_fresh(cached_text, s)
    assert entry.is_dir() and "is not a directory" in s.notice


def test_a_linked_id_file_is_not_followed(cached_text, tmp_path):
    entry = entry_of(cached_text)
    elsewhere = tmp_path / "elsewhere.int32"
    shutil.copyfile(entry / "ids.int32", elsewhere)
    (entry / "ids.int32").unlink()
    (entry / "ids.int32").symlink_to(elsewhere)
    s = ids.stream_ids(cached_text)
    assert_fresh(cached_text, s)
    assert not (entry / "ids.int32").is_symlink() and "ids.int32" in s.notice


def test_an_old_cache_without_a_digest_is_rebuilt_once(cached_text, monkeypatch):
    entry = entry_of(cached_text)
    meta = json.loads((entry / "meta.json").read_text())
    del meta["digest"]
    meta["format_version"] = 1
    (entry / "meta.json").write_text(json.dumps(meta))
    s = ids.stream_ids(cached_text)
    assert_fresh(cached_text, s)
    assert "another version" in s.notice

    def no_scanning(*a, **k):
        raise AssertionError("the rebuilt cache was not used")

    monkeypatch.setattr(ids, "_build", no_scanning)
    again = ids.stream_ids(cached_text)
    assert not again.notice and again.words == s.words


# ---- the Presage bridge ---------------------------------------------------------------------------
EXITS = b"#!/bin/sh\necho 'bridge: gone' >&2\nexit 3\n"
ANSWERS = b'#!/bin/sh\nwhile IFS= read -r line; do printf "the\\t0.5\\tthey\\t0.25\\n"; done\n'
ANSWERS_ONCE = b'#!/bin/sh\nread -r line\nprintf "\\n"\nexit 0\n'  # the first query, then gone
GARBAGE = b"\x00\x01\x02" + np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def put(path: Path, program: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(program)
    path.chmod(0o755)


@pytest.fixture
def fake_presage(monkeypatch):
    """Presage "available" with fake tools: text2ngram writes an empty database, and compiling
    the bridge writes ``state["compiled"]``; ``state["calls"]`` counts the compilations."""
    state = {"compiled": ANSWERS, "calls": 0}
    monkeypatch.setattr(presage, "presage_missing", lambda: None)
    monkeypatch.setattr(ks, "presage_missing", lambda: None)

    def database(tokens, workdir, order=3):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "ngram-fake.db").write_bytes(b"")
        return workdir / "ngram-fake.db"

    def compile_bridge(exe):
        state["calls"] += 1
        put(exe, state["compiled"])

    monkeypatch.setattr(presage, "build_database", database)
    monkeypatch.setattr(presage, "compile_bridge", compile_bridge)
    return state


class Splitter:
    def split_prefix(self, text):
        toks = text.split()
        return (toks, "") if not toks or text[-1].isspace() else (toks[:-1], toks[-1])


@pytest.mark.parametrize("broken", [EXITS, GARBAGE, b"#!/bin/sh\nwhile read l; do echo nonsense; done\n"], ids=["exits", "garbage", "nonsense"])
def test_a_broken_bridge_is_compiled_again(fake_presage, tmp_path, broken):
    put(presage.bridge_path(tmp_path), broken)
    with presage.PresageSource(["the", "cat"], Splitter(), suggestions=5, workdir=tmp_path) as src:
        assert src.predict("th") == [("the", 0.5), ("they", 0.25)]
    assert fake_presage["calls"] == 1


def test_a_failed_compilation_says_why_the_old_bridge_was_replaced(fake_presage, tmp_path, monkeypatch):
    def no_compiler(exe):
        raise StoryError("Presage is not available: compiling presage_bridge.cc failed (no g++)")

    monkeypatch.setattr(presage, "compile_bridge", no_compiler)
    put(presage.bridge_path(tmp_path), EXITS)
    with pytest.raises(StoryError) as e:
        presage.PresageSource(["the", "cat"], Splitter(), suggestions=5, workdir=tmp_path)
    assert "compiling presage_bridge.cc failed" in str(e.value) and "exited at once" in str(e.value)
    assert not presage.bridge_path(tmp_path).exists()  # the broken one is gone


def test_when_the_new_bridge_fails_too_presage_says_why_and_the_rest_runs(fake_presage, default_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(presage, "presage_dir", lambda: tmp_path)
    put(presage.bridge_path(tmp_path), GARBAGE)
    fake_presage["compiled"] = EXITS
    tokens = tokenize(CAT.read_text(encoding="utf-8"))
    res = ks.keystrokes(default_bundle, tokens[:60], (1,), which=("model", "presage"), train_tokens=tokens)
    assert res["presage"] is None and res["model"]["1"] > 0 and fake_presage["calls"] == 1
    note = res["presage_note"]
    assert "exited at once (exit status 3: bridge: gone)" in note and "Exec format error" in note and "\n" not in note


def test_a_bridge_that_stops_midway_leaves_the_other_rows(fake_presage, default_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(presage, "presage_dir", lambda: tmp_path)
    put(presage.bridge_path(tmp_path), ANSWERS_ONCE)  # answers the first query, so it looks fine
    tokens = tokenize(CAT.read_text(encoding="utf-8"))
    res = ks.keystrokes(default_bundle, tokens[:60], (1,), which=("model", "baseline", "presage"), train_tokens=tokens)
    assert res["presage"] is None and "stopped answering" in res["presage_note"]
    assert res["model"]["1"] > 0 and res["baseline"]["1"] > 0 and fake_presage["calls"] == 0


def test_eval_keystrokes_with_a_bridge_that_exits_at_once(fake_presage, home_with_default, monkeypatch, capsys):
    monkeypatch.setenv("STORY_REPL_DEBUG", "1")
    put(presage.bridge_path(home_with_default / "presage"), EXITS)
    fake_presage["compiled"] = EXITS
    assert cli.main(["eval", str(CAT), "--corpus", str(CAT), "--keystrokes", "--menu", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["keystrokes"]
    assert out["presage"] is None and "exited at once" in out["presage_note"] and set(out["model"]) == {"1"}


def test_a_broken_pipe_that_is_not_stdout_is_reported(monkeypatch, capsys):
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_eval", broken)
    assert cli.main(["eval", str(CAT)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("story-repl: error: BrokenPipeError") and err.count("\n") == 1
    monkeypatch.setenv("STORY_REPL_DEBUG", "1")
    with pytest.raises(BrokenPipeError):
        cli.main(["eval", str(CAT)])


def test_a_closed_stdout_is_told_from_other_pipes():
    code = "import sys; from repl.cli import stdout_closed; sys.stderr.write(str(stdout_closed()))"
    r, w = os.pipe()
    os.close(r)  # nobody reads: as after `story-repl ... | head` has exited
    try:
        closed = subprocess.run([sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
    finally:
        os.close(w)
    open_pipe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (closed.stderr, open_pipe.stderr) == ("True", "False")


# ---- the wheel ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel built from a copy of the repository, the directory it is installed in), offline."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("model", "repl", "corpora"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp / "dist").glob("story_repl-*.whl")
    site = tmp / "site"
    install = subprocess.run([*pip, "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    return wheel, site


def run_installed(site: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    """Python code run against the installed wheel (the repository is not on its path)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=site.parent,
                          env=dict(os.environ, PYTHONPATH=str(site), **env))


@pytest.mark.slow  # builds and installs a wheel
def test_the_wheel_ships_the_bridge_source_where_presage_looks(installed_wheel):
    wheel, site = installed_wheel
    with zipfile.ZipFile(wheel) as z:
        assert z.read("model/evaluation/presage_bridge.cc") == (ROOT / "model/evaluation/presage_bridge.cc").read_bytes()
    found = run_installed(site, "import model.evaluation.presage as p; print(p.__file__); print(p.BRIDGE_SOURCE.is_file())")
    assert found.returncode == 0, found.stderr
    module, exists = found.stdout.split()
    assert Path(module).is_relative_to(site) and exists == "True"


@pytest.mark.slow  # builds and installs a wheel, then compiles the bridge
def test_a_wheel_install_compiles_the_bridge(installed_wheel, tmp_path):
    why = presage.presage_missing()
    if why:
        pytest.skip(f"cannot compile the bridge here: {why}")
    _, site = installed_wheel
    built = run_installed(site, "from model.evaluation.presage import build_bridge; print(build_bridge())",
                          STORY_REPL_HOME=str(tmp_path / "home"))
    assert built.returncode == 0, built.stderr
    exe = Path(built.stdout.strip())
    assert exe.is_relative_to(tmp_path / "home") and os.access(exe, os.X_OK)
