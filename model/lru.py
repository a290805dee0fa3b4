"""A small least-recently-used cache: the one memo every predictor, index and text cache uses."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most ``size`` entries; reading or writing an entry makes it the most recent, and the
    least recent one is dropped when a new entry would exceed the size."""

    def __init__(self, size: int):
        if int(size) < 1:
            raise ValueError(f"an LRU cache needs a positive size, got {size}")
        self.size = int(size)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value under ``key`` (now the most recent), or ``default``."""
        try:
            self._items.move_to_end(key)
        except KeyError:
            return default
        return self._items[key]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value under ``key``, or ``default``, leaving the order of recency as it is."""
        return self._items.get(key, default)

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` and return it."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value under ``key``, made with ``make()`` and stored when missing."""
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return self.put(key, make())

    def clear(self) -> None:
        self._items.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)
