"""The order in which a query tries a stanza's upstreams (`policy random|round_robin|sequential`)."""

from __future__ import annotations

import random as _random
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Policy(Protocol):
    """Orders a query's upstreams: the order in which it tries them."""

    def __call__(self, items: Sequence[T], /) -> Sequence[T]: ...


def random_order(items: Sequence[T]) -> Sequence[T]:
    """A fresh random order for every query (the default)."""
    n = len(items)
    if n == 1:
        return items
    if n == 2:
        # The common two-resolver case without building a permutation.
        return items if _random.getrandbits(1) else (items[1], items[0])
    return _random.sample(items, n)


def sequential(items: Sequence[T]) -> Sequence[T]:
    """Always the configured order: the first healthy upstream gets every query."""
    return items


class RoundRobin:
    """Each query starts one further along; the others follow in configured order."""

    def __init__(self) -> None:
        self.counter = 0

    def __call__(self, items: Sequence[T]) -> Sequence[T]:
        n = len(items)
        if n == 1:
            return items
        self.counter += 1
        i = self.counter % n
        return [items[i], *items[:i], *items[i + 1:]]


def make_policy(name: str) -> Policy:
    if name == "round_robin":
        return RoundRobin()
    if name == "sequential":
        return sequential
    return random_order
