"""Vocabulary: tokens ranked by frequency, ties broken by first appearance.

Id 0 is the most frequent token. The network's input reserves one extra id for padding
(see :mod:`model.training.network`), but the vocabulary itself never contains a padding token.
When ``max_size`` or ``min_count`` drop rare words, they all map to ``<unk>``, which
then has its own id; ``<unk>`` is never offered as a completion or generated.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from model.errors import StoryError

UNK = "<unk>"
FORMAT_VERSION = 1


@dataclass
class Vocab:
    tokens: list[str]
    counts: list[int]
    dropped: int = field(default=0, compare=False)  # distinct words folded into <unk> when it was built
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise StoryError("vocabulary has duplicate tokens; the bundle is corrupt")

    # ---- construction -------------------------------------------------------------
    @classmethod
    def build(cls, tokens: Sequence[str], max_size: int | None = None, min_count: int = 1) -> "Vocab":
        """Rank ``tokens`` by count (descending), ties by first appearance.

        Words below ``min_count``, or beyond the ``max_size`` most frequent, become ``<unk>``;
        ``<unk>`` then takes the rank its total count earns.
        """
        counts = Counter(tokens)
        first: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t not in first:
                first[t] = i
        ranked = sorted(counts, key=lambda t: (-counts[t], first[t]))
        keep = [t for t in ranked if counts[t] >= max(1, min_count) and t != UNK]
        limit = None if max_size is None else max(1, int(max_size))
        if limit is not None and len(keep) > limit:
            keep = keep[: limit - 1]  # leave one slot for <unk>
        kept = set(keep)
        dropped = [t for t in ranked if t not in kept]
        if not dropped:
            return cls(keep, [counts[t] for t in keep])
        unk_count = sum(counts[t] for t in dropped)
        unk_first = min(first[t] for t in dropped)
        entries = [(t, counts[t], first[t]) for t in keep] + [(UNK, unk_count, unk_first)]
        entries.sort(key=lambda e: (-e[1], e[2]))
        return cls([e[0] for e in entries], [e[1] for e in entries], dropped=len(dropped))

    @classmethod
    def from_counts(
        cls,
        words: Sequence[str],
        counts: Sequence[int] | np.ndarray,
        first: Sequence[int] | np.ndarray | None = None,
        max_size: int | None = None,
        min_count: int = 1,
    ) -> "Vocab":
        """What :meth:`build` gives for a text whose distinct tokens are ``words``, seen
        ``counts`` times, without the token list.

        ``first`` orders the words by first appearance (a position or a rank; by default the
        order of ``words``). Words counted 0 times are not part of the text and are left out."""
        counts = np.asarray(counts, dtype=np.int64)
        first = np.arange(len(counts), dtype=np.int64) if first is None else np.asarray(first, dtype=np.int64)
        if not (len(words) == len(counts) == len(first)):
            raise ValueError("words, counts and first must have the same length")
        order = np.lexsort((first, -counts))  # count descending, then first appearance
        order = order[counts[order] > 0]
        c, f = counts[order], first[order]
        keep = c >= max(1, int(min_count))
        unk_at = [i for i, w in enumerate(words) if w == UNK]
        if unk_at:
            keep &= order != unk_at[0]
        kept = order[keep]
        limit = None if max_size is None else max(1, int(max_size))
        if limit is not None and len(kept) > limit:
            cut = np.flatnonzero(keep)[limit - 1]  # leave one slot for <unk>
            keep[cut:] = False
            kept = order[keep]
        n_dropped = int(len(order) - len(kept))
        tokens = [words[i] for i in kept.tolist()]
        kept_counts = counts[kept]
        if not n_dropped:
            return cls(tokens, kept_counts.tolist())
        unk_count = int(c[~keep].sum())
        unk_first = int(f[~keep].min())
        kf = first[kept]
        at = int(np.count_nonzero((kept_counts > unk_count) | ((kept_counts == unk_count) & (kf < unk_first))))
        tokens.insert(at, UNK)
        out_counts = kept_counts.tolist()
        out_counts.insert(at, unk_count)
        return cls(tokens, out_counts, dropped=n_dropped)

    def id_table(self, words: Sequence[str]) -> np.ndarray:
        """(len(words),) int32: the id of each word in this vocabulary; a word it lacks gets
        ``<unk>``'s id, or -1 when there is no ``<unk>`` (as :meth:`split_known` skips it).

        ``table[corpus_ids]`` maps a corpus's full-vocabulary ids to model ids."""
        unk = self.unk_id
        missing = -1 if unk is None else unk
        get = self.index.get
        return np.fromiter(
            (missing if w == UNK else get(w, missing) for w in words), dtype=np.int32, count=len(words)
        )

    # ---- lookups --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    @property
    def unk_id(self) -> int | None:
        return self.index.get(UNK)

    def unk_note(self) -> str | None:
        """One line saying how many words the network keeps and that the rarer ones (its ``<unk>``)
        are completed from the n-gram (None when it keeps every word)."""
        unk = self.unk_id
        if unk is None:
            return None
        others = f"the other {self.dropped:,}" if self.dropped else "the rarer ones"
        return (
            f"the network keeps {len(self) - 1:,} words; {others} are completed from the n-gram "
            f"(raise --max-vocab or lower --min-count to keep more in the network)"
        )

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids for ``tokens``; unknown tokens become ``<unk>``, or raise if there is none."""
        unk = self.unk_id
        out = []
        for t in tokens:
            i = self.index.get(t, unk)
            if i is None:
                raise StoryError(f"unknown word {t!r} and the vocabulary has no <unk>")
            out.append(i)
        return np.asarray(out, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def split_known(self, tokens: Iterable[str]) -> tuple[list[int], list[str]]:
        """Ids of the usable tokens, and the tokens the vocabulary does not know.

        With an ``<unk>`` entry, unknown tokens map to it (and are still reported).
        Without one, they are skipped so prediction goes on from the known context.
        """
        ids: list[int] = []
        unknown: list[str] = []
        unk = self.unk_id
        for t in tokens:
            i = self.index.get(t)
            if i is None or t == UNK:
                unknown.append(t)
                if unk is not None:
                    ids.append(unk)
            else:
                ids.append(i)
        return ids, unknown

    # ---- persistence ----------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "size": len(self.tokens),
                "dropped": self.dropped,
                "tokens": self.tokens,
                "counts": self.counts,
            },
            ensure_ascii=False,
            indent=0,
        )

    @classmethod
    def from_json(cls, data: str | bytes, source: str = "vocab.json") -> "Vocab":
        """The vocabulary saved by :meth:`to_json`, checked as untrusted input: ``source`` (the
        file's name or path) is named in every one-line error."""
        from pathlib import Path

        from model.storage.untrusted import parse_json

        raw = data.encode("utf-8") if isinstance(data, str) else data
        try:
            raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise StoryError(f"{source} is unreadable: not UTF-8 text (byte {e.start}); retrain or re-save the model") from None
        data = parse_json(raw, Path(source))
        if not isinstance(data, dict):
            raise StoryError(f"{source} is malformed; retrain or re-save the model")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise StoryError(f"{source} has no format version; retrain or re-save the model")
        if version > FORMAT_VERSION:
            raise StoryError(
                f"{source} has format version {version}, newer than this story-repl ({FORMAT_VERSION}); upgrade story-repl"
            )
        tokens, counts = data.get("tokens"), data.get("counts")
        if (
            not isinstance(tokens, list)
            or not isinstance(counts, list)
            or len(tokens) != len(counts)
            or not tokens
            or not all(isinstance(t, str) for t in tokens)
        ):
            raise StoryError(f"{source} is malformed (tokens and counts disagree); retrain or re-save the model")
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise StoryError(f"{source} is malformed (counts are not whole numbers); retrain or re-save the model")
        bad = next((i for i, t in enumerate(tokens) if not _is_token(t)), None)
        if bad is not None:
            from model.storage.untrusted import visible

            raise StoryError(
                f"{source}: token {bad} is {visible(repr(tokens[bad]))[:60]}, which no text gives "
                f"(empty, or with a space or control character); retrain or re-save the model"
            )
        dropped = data.get("dropped", 0)
        return cls(list(tokens), list(counts), dropped=dropped if isinstance(dropped, int) and dropped >= 0 else 0)


# Format characters a token may hold: ZWNJ and ZWJ inside words and emoji, and emoji tags.
_KEPT_FORMAT = frozenset("\u200c\u200d") | frozenset(map(chr, range(0xE0020, 0xE0080)))


def _is_token(t: str) -> bool:
    """Whether the tokenizer could have produced ``t``: not empty, no whitespace, no control,
    surrogate or format character (but those it keeps)."""
    if not t or (t.isprintable() and not any(ch.isspace() for ch in t)):
        return bool(t)
    import unicodedata

    return not any(ch.isspace() or (unicodedata.category(ch) in ("Cc", "Cs", "Cf") and ch not in _KEPT_FORMAT) for ch in t)
