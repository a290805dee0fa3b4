"""Streaming a corpus to ids (model.text.ids): the same tokens, vocabulary and paragraph split as
tokenizing the whole text, the id cache, worker processes, and the numpy training batches."""
from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.text import corpus as corpus_mod
from model.training import data
from model.text import id_arrays, ids
from model.text import scanner
from model.text.corpus import read_corpus
from model.training.data import split_paragraphs
from model.errors import StoryError
from model.text.tokenize import tokenize
from model.text.vocab import UNK, Vocab
from repl.train_progress import ReadingClock, duration, reading_line

from helpers import ROOT

SHIPPED = sorted((ROOT / "corpora").glob("*.txt"))


def old_paragraphs(text: str, keep_case: bool = False) -> list[list[str]]:
    """Paragraph token lists exactly as Corpus.paragraphs() built them from the text."""
    out, block = [], []
    for line in text.splitlines():
        if line.strip():
            block.append(line)
        elif block:
            out.append(block)
            block = []
    if block:
        out.append(block)
    return [t for t in (tokenize("\n".join(b), keep_case=keep_case) for b in out) if t]


def sizes_of(streamed: ids.Streamed | ids.Piece, n: int | None = None) -> list[int]:
    if isinstance(streamed, ids.Piece):
        starts = np.unique(np.concatenate([[0], streamed.breaks]))
        n = len(streamed.ids)
        starts = starts[starts < n]
    else:
        starts, n = streamed.paragraph_starts, len(streamed.ids)
    return np.diff(np.append(starts, n)).tolist()


def assert_same_as_tokenizing(text: str, s: ids.Streamed, keep_case: bool = False) -> None:
    tokens = tokenize(text, keep_case=keep_case)
    vocab = Vocab.build(tokens)
    assert s.words == vocab.tokens
    assert s.counts.tolist() == vocab.counts
    np.testing.assert_array_equal(np.asarray(s.ids), vocab.encode(tokens))
    assert sizes_of(s) == [len(p) for p in old_paragraphs(text, keep_case)]


# ---- the scanner gives tokenize()'s tokens ---------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("keep_case", [False, True])
def test_scan_equals_tokenize_on_every_shipped_corpus(path, keep_case):
    text = path.read_text(encoding="utf-8")
    piece = ids.scan_piece(text, keep_case)
    assert [piece.words[i] for i in piece.ids] == tokenize(text, keep_case=keep_case)
    assert sizes_of(piece) == [len(p) for p in old_paragraphs(text, keep_case)]


PIECES = [
    "a", "B", "z", "é", "e\u0301", "İ", "Σ", "ΟΔΟΣ", "ß", "ﬁ", "x", "1", "²", "don't", "o'er",
    "漢", "字", "か", "한", "\u1100", "\u1161", "'", "\u2019", '"', "\u201c", ".", ",", "!", "-", "_", "—",
    "，", "。", "「", " ", "  ", "\t", "\u3000", "\u00a0", "\u2000", "\u0301", "\u200d", "\u200c",
    "\ufe0f", "😀", "👍", "\U0001f3fd", "🇺", "🇸", "#", "\u200b", "\u00ad", "\x01", "\x7f",
    "\n", "\n\n", "\r\n", "\r\n\r\n", "\r", "\n \n", "\x0b", "\x0c", "\x1c", "\x1e", "\x1f", "\x85",
    "\u2028", "\u2029", "\n\u200b\n", "\n\u3000\n", "\ufeff",
]
text_parts = st.lists(
    st.one_of(st.sampled_from(PIECES), st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    max_size=60,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text_parts, st.booleans())
def test_scan_equals_tokenize_on_random_text(parts, keep_case):
    text = "".join(parts)
    piece = ids.scan_piece(text, keep_case)
    assert [piece.words[i] for i in piece.ids] == tokenize(text, keep_case=keep_case)
    assert sizes_of(piece) == [len(p) for p in old_paragraphs(text, keep_case)]
    assert list(piece.words) == list(dict.fromkeys(piece.words[i] for i in piece.ids))  # first-appearance order


chunk_parts = st.lists(
    st.one_of(
        st.sampled_from(PIECES + ["\x00", "a\x00", "abcdefghijklmno", "abcdefghijklmnop", "abcdefghijklmnopq", "é" * 8]),
        st.characters(blacklist_categories=("Cs",)),
        st.text(alphabet="ab\x00é ", min_size=14, max_size=20),
    ),
    max_size=80,
)


def expected_breaks(text: str) -> list[int]:
    """Chunk positions of the paragraph breaks, the way the scanner once found them: a regular
    expression over the text for two line breaks with only whitespace between."""
    import re

    lb = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    one = f"[{lb}](?:(?<=\r)\n|(?!(?<=\r)\n))"
    marked = re.sub(f"{one}(?:[^\\S{lb}]*{one})+", " \uffff\uffff ", text.replace("\uffff", "x"))
    out, n = [], 0
    for c in marked.split():
        if c == "\uffff\uffff":
            out.append(n)
        else:
            n += 1
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk_parts)
def test_chunk_ids_are_str_split_with_the_paragraph_breaks(parts):
    text = "".join(parts)
    distinct, raw, break_at = scanner.chunk_ids(text)
    assert [distinct[i] for i in raw] == text.split()
    assert distinct == list(dict.fromkeys(text.split()))  # each once, in order of first appearance
    assert break_at.tolist() == expected_breaks(text)


def test_every_non_ascii_space_is_known():
    import sys

    spaces = {chr(c) for c in range(128, sys.maxunicode + 1) if chr(c).isspace()}
    assert spaces == set(scanner.WIDE_SPACES)
    breaks = {c for c in spaces if len(("a" + c + "b").splitlines()) == 2}
    assert breaks == {c for c, rep in scanner.WIDE_SPACES.items() if rep.startswith(b"\x0b")}


def test_chunks_whose_hashes_collide_are_still_told_apart(monkeypatch):
    text = "the cat and the hat and a cat " * 50 + "abcdefghijklmnopqrstu " * 3
    monkeypatch.setattr(scanner, "_HASH_MUL", (np.uint64(0), np.uint64(0)))  # every hash equal
    distinct, raw, _ = scanner.chunk_ids(text)
    assert [distinct[i] for i in raw] == text.split()
    assert distinct == list(dict.fromkeys(text.split()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text_parts, st.integers(1, 40))
def test_streaming_in_small_chunks_equals_tokenizing_the_whole_text(tmp_path, parts, chunk):
    text = "".join(parts)
    if not text.strip() or not tokenize(text):
        return
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8", newline="")
    s = ids.stream_ids(path, chunk=chunk, use_cache=False, workers=1)
    assert_same_as_tokenizing(text.removeprefix("\ufeff"), s)


# ---- the vocabulary from counts --------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", UNK]), min_size=1, max_size=80),
    st.one_of(st.none(), st.integers(1, 8)),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_from_counts_equals_build(tokens, max_size, min_count, rnd):
    words = list(dict.fromkeys(tokens))
    count = Counter(tokens)
    shuffled = words[:]
    rnd.shuffle(shuffled)  # any order, with first-appearance ranks given
    built = Vocab.build(tokens, max_size=max_size, min_count=min_count)
    got = Vocab.from_counts(shuffled, [count[w] for w in shuffled], [words.index(w) for w in shuffled], max_size, min_count)
    assert (got.tokens, got.counts, got.dropped) == (built.tokens, built.counts, built.dropped)


def test_from_counts_leaves_out_unseen_words_and_id_table_maps_like_split_known():
    v = Vocab.from_counts(["a", "b", "c", "zz"], [3, 2, 2, 0], min_count=3)
    assert v.tokens == [UNK, "a"] and v.counts == [4, 3] and v.dropped == 2  # b and c, counted 4 times
    assert v.id_table(["a", "b", "zz", UNK]).tolist() == [1, 0, 0, 0]
    plain = Vocab.from_counts(["a", "b"], [1, 1])
    assert plain.id_table(["b", "a", "q", UNK]).tolist() == [1, 0, -1, -1]
    assert plain.split_known(["b", "a", "q", UNK])[0] == [1, 0]


# ---- the corpus: split by paragraphs, lazy token views -----------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_split_equals_split_paragraphs(path):
    c = read_corpus(path)
    text = path.read_text(encoding="utf-8")
    tokens = tokenize(text)
    paragraphs = old_paragraphs(text)
    for fraction in (0.0, 0.05, 0.1, 0.25, 0.5, 0.99):
        train, valid = split_paragraphs(paragraphs, tokens, fraction)
        train_ids, valid_ids = c.split(fraction)
        assert len(train_ids) == len(train) and len(valid_ids) == len(valid)
        assert [c.words[i] for i in valid_ids] == valid
    assert c.paragraphs() == paragraphs


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["the cat", "sat", ".", "\n", "\n\n", "\n \n", "é", "\r\n\r\n"]), max_size=40),
       st.sampled_from([0.1, 0.3, 0.5, 0.9]))
def test_split_equals_split_paragraphs_on_random_paragraphs(tmp_path, parts, fraction):
    text = "".join(parts)
    if not tokenize(text):
        return
    path = tmp_path / "p.txt"
    path.write_text(text, encoding="utf-8", newline="")
    c = read_corpus(path)
    train, valid = split_paragraphs(old_paragraphs(text), tokenize(text), fraction)
    train_ids, valid_ids = c.split(fraction)
    assert (c.tokens[: len(train_ids)], [c.words[i] for i in valid_ids]) == (train, valid)


def test_token_view_is_a_lazy_read_only_sequence():
    c = read_corpus("belling_the_cat")
    toks = tokenize((ROOT / "corpora" / "belling_the_cat.txt").read_text(encoding="utf-8"))
    assert len(c.tokens) == c.n_tokens == 204 and c.tokens == toks and list(c.tokens) == toks
    assert c.tokens[0] == "long" and c.tokens[-1] == toks[-1] and c.tokens[1:4] == toks[1:4]
    assert c.text.startswith("long ago") and c.name == "belling_the_cat"
    assert isinstance(c.ids, np.ndarray) and c.ids.dtype == np.int32


# ---- the id cache --------------------------------------------------------------------------------


def big_text(tmp_path: Path, name: str = "book.txt", repeat: int = 2) -> Path:
    path = tmp_path / name
    path.write_bytes((ROOT / "corpora" / "aesops_fables.txt").read_bytes() * repeat)
    return path


def test_large_texts_are_cached_memory_mapped_and_reused(tmp_path, monkeypatch, _private_home):
    monkeypatch.setattr(ids, "CACHE_MIN_BYTES", 1 << 16)
    path = big_text(tmp_path)
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(corpus_mod, "CHUNK", 1 << 15)
    first = read_corpus(path, progress=lambda d, t: seen.append((d, t)))
    assert isinstance(first.ids, np.memmap) and seen and seen[-1] == (path.stat().st_size,) * 2
    cache = _private_home / "ids"
    (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        ["ids.int32", "words.txt", "counts.int64", "first.int64", "paragraphs.int64", "meta.json"]
    )
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["sha256"] == first.sha256 and meta["n_tokens"] == first.n_tokens
    assert_same_as_tokenizing(path.read_text(encoding="utf-8"), ids.load_cached(entry, first.sha256))

    def no_scanning(*a, **k):
        raise AssertionError("the cache was not used")

    build = ids._build
    monkeypatch.setattr(ids, "_build", no_scanning)
    seen.clear()
    again = read_corpus(path, progress=lambda d, t: seen.append((d, t)))
    assert not seen and again.words == first.words and np.array_equal(again.ids, first.ids)
    assert ids.cache_key(first.sha256, "UTF8", False) == ids.cache_key(first.sha256, "utf-8", False)
    monkeypatch.setattr(ids, "_build", build)
    cased = read_corpus(path, keep_case=True)  # other tokenizer settings: an entry of its own
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2 and cased.words != first.words


def test_a_broken_or_half_written_cache_is_never_used(tmp_path, monkeypatch, _private_home):
    monkeypatch.setattr(ids, "CACHE_MIN_BYTES", 1 << 16)
    path = big_text(tmp_path)
    c = read_corpus(path)
    sha, want = c.sha256, np.array(c.ids)  # a copy: the file is damaged below
    del c
    entry = ids.cache_root() / ids.cache_key(sha, "utf-8", False)
    with open(entry / "ids.int32", "r+b") as fh:  # truncated: rebuilt, not used
        fh.truncate(100)
    assert ids.load_cached(entry, sha) is None
    assert np.array_equal(read_corpus(path).ids, want) and os.path.getsize(entry / "ids.int32") == 4 * len(want)
    (entry / "meta.json").write_text(json.dumps({"format_version": 99}))
    assert ids.load_cached(entry, sha) is None
    assert np.array_equal(read_corpus(path).ids, want)
    # a leftover temporary directory of a dead writer is not a cache entry
    leftover = ids.cache_root() / f".tmp-{ids.cache_key(sha, 'utf-8', False)}-dead"
    leftover.mkdir()
    (leftover / "ids.int32").write_bytes(b"\0" * 8)
    assert np.array_equal(read_corpus(path).ids, want)


def test_worker_processes_give_the_same_ids_and_errors(tmp_path, _private_home):
    path = big_text(tmp_path, repeat=3)
    alone = ids.stream_ids(path, chunk=1 << 14, use_cache=False, workers=1)
    pooled = ids.stream_ids(path, chunk=1 << 14, use_cache=False, workers=2)
    assert alone.words == pooled.words and np.array_equal(alone.ids, pooled.ids)
    assert np.array_equal(alone.paragraph_starts, pooled.paragraph_starts)
    good = b"the mice met in council.\n" * 4000
    bad = tmp_path / "bad.txt"
    bad.write_bytes(good + b"caf\xe9\n" + good)
    with pytest.raises(StoryError, match=rf"byte 0xe9 at offset {len(good) + 3} "):
        ids.stream_ids(bad, chunk=1 << 12, use_cache=False, workers=2)
    bad.write_bytes(good + b"\x00" + good)
    with pytest.raises(StoryError, match="NUL bytes"):
        ids.stream_ids(bad, chunk=1 << 12, use_cache=True, workers=2)
    assert not [p for p in ids.cache_root().iterdir() if p.name.startswith(".tmp-")]  # cleaned up


def test_empty_and_wordless_files_are_one_line_errors(tmp_path):
    for content, message in [(b"", "is empty"), (b"  \n\n\t", "is empty"), (b"\xef\xbb\xbf", "is empty"),
                             (b"\xe2\x80\x8b\n", "has no words")]:
        path = tmp_path / "x.txt"
        path.write_bytes(content)
        with pytest.raises(StoryError, match=message):
            read_corpus(path)
    with pytest.raises(StoryError, match="unknown encoding"):
        read_corpus("belling_the_cat", encoding="klingon")


# ---- training data from ids ------------------------------------------------------------------


def test_prepare_from_ids_equals_the_token_way(tmp_path, monkeypatch):
    from model.config import Config
    from model.training.train import prepare

    c = read_corpus("aesops_fables")
    text = (ROOT / "corpora" / "aesops_fables.txt").read_text(encoding="utf-8")
    tokens = tokenize(text)
    for kw in ({"valid_fraction": 0.1}, {"valid_fraction": 0.1, "min_count": 1}, {"max_vocab": 500}):
        cfg, vocab, train_ids, valid_ids = prepare(c, Config(**kw))
        train, valid = split_paragraphs(old_paragraphs(text), tokens, cfg.valid_fraction)
        want = Vocab.build(train, max_size=cfg.max_vocab, min_count=cfg.min_count)
        assert (vocab.tokens, vocab.counts) == (want.tokens, want.counts)
        np.testing.assert_array_equal(train_ids, want.encode(train))
        known = want.encode(valid) if want.unk_id is not None else np.asarray(want.split_known(valid)[0], np.int32)
        np.testing.assert_array_equal(valid_ids, known)
    _, _, in_memory, _ = prepare(c, Config(valid_fraction=0.1))
    monkeypatch.setattr(id_arrays, "SPILL_MIN_IDS", 1000)  # large arrays go to a memory-mapped file
    _, _, spilled, _ = prepare(c, Config(valid_fraction=0.1))
    assert isinstance(spilled, np.memmap) and not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(spilled, in_memory)


def test_stream_batches_visit_every_window_once_per_epoch_in_a_seeded_order():
    arr = np.arange(10_000, dtype=np.int32) * 3
    context, batch = 4, 256
    n = len(arr) - context
    per_epoch = -(-n // batch)
    gen = data.stream_batches(arr, context, batch, seed=7)
    first = [next(gen) for _ in range(per_epoch)]
    starts = np.concatenate([x[:, 0] - 1 for x, _ in first]) // 3
    assert sorted(starts.tolist()) == list(range(n))
    for x, y in first:
        assert np.array_equal(x - 1, arr[(x[:, :1] - 1) // 3 + np.arange(context)]) and np.array_equal(y, (x[:, -1] - 1) + 3)
    second = [next(gen) for _ in range(per_epoch)]
    assert not np.array_equal(first[0][0], second[0][0])  # a new order each epoch
    again = data.stream_batches(arr, context, batch, seed=7)
    assert all(np.array_equal(next(again)[0], x) for x, _ in first)  # the same order from the seed
    xs, ys = next(data.stream_batches(arr, context, batch, seed=7, sequence=True))
    assert ys.shape == (batch, context) and np.array_equal(ys[:, :-1], xs[:, 1:] - 1)


def test_ceiling_by_sorting_equals_the_dictionary_count():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 12, 5000).astype(np.int32)
    x, y = data.windows(arr, 3)
    exact = data.ceiling(x, y)
    fast = data._ceiling_sorted(np.ascontiguousarray(x), y.astype(np.int64))
    assert fast[0] == exact[0] and fast[1] == pytest.approx(exact[1], rel=1e-12)
    assert data.ceiling(x, y, limit=100) == data.ceiling(x[:100], y[:100])


# ---- progress ------------------------------------------------------------------------------------


def test_reading_line_shows_share_speed_and_time_left():
    assert reading_line(420_000_000, 1_000_000_000, 12.0) == "reading corpus 42% 35.0 MB/s ETA 17s"
    assert reading_line(1, 1, 2.0) == "reading corpus 100% 0.0 MB/s"
    assert reading_line(0, 100, 0.0) == "reading corpus 0%"
    assert duration(185) == "3m05s" and duration(3720) == "1h02m"
    shown: list[str] = []
    clock = ReadingClock(shown.append, every=3600)
    clock(10, 100)
    clock(50, 100)  # throttled
    clock(100, 100)  # the last chunk is always shown
    assert len(shown) == 2 and shown[-1].startswith("reading corpus 100%") and clock.line == shown[-1]


def test_random_words_in_many_pieces_keep_first_appearance_ties():
    rnd = random.Random(3)
    words = [f"w{i}" for i in range(300)]
    text = "\n".join(" ".join(rnd.choice(words) for _ in range(12)) for _ in range(2000))
    merged = ids._Merger(lambda a: None, sources=2)
    pieces, pos = [], 0
    while pos < len(text):  # cut anywhere before whitespace, as the reader does
        end = text.find(" ", pos + rnd.randint(1, 400))
        end = len(text) if end < 0 else end
        pieces.append(text[pos:end])
        pos = end
    out = []
    merged.sink = out.append
    # two scanners that keep what they saw, taking pieces in turn, as two worker processes do
    scanners = [scanner.Scanner(), scanner.Scanner()]
    for k, p in enumerate(pieces):
        s = scanners[k % 2].scan(p.encode())
        merged.add(k % 2, s)
    prov = np.concatenate(out)
    first_seen = list(merged.index)
    assert [first_seen[i] for i in prov] == tokenize(text)


def test_a_scanner_that_forgets_its_chunks_gives_the_same_ids(monkeypatch):
    rnd = random.Random(11)
    words = [f"w{i}" for i in range(500)] + ["naïve", "漢字", "don't", "abcdefghijklmnopqrstuvwxyz."]
    pieces = [" ".join(rnd.choice(words) for _ in range(300)) + "\n\n" for _ in range(12)]
    keeps = scanner.Scanner()
    monkeypatch.setattr(scanner, "MAX_CHUNKS", 50)  # forgets before nearly every piece
    forgets = scanner.Scanner()
    for p in pieces:
        a, b = keeps.scan(p.encode()), forgets.scan(p.encode())
        assert a.words == b.words and np.array_equal(a.ids, b.ids) and np.array_equal(a.breaks, b.breaks)
    assert forgets._n_chunks <= 50 + len(words) and keeps.words == forgets.words
    assert [keeps.words[i] for p in pieces for i in keeps.scan(p.encode()).ids] == tokenize("".join(pieces))
