"""A stand-in for a circuit model's lock-free failure counter that runs a hook as it counts:
another thread's work, placed exactly between a failure's steps."""

from __future__ import annotations

import itertools
from collections.abc import Callable


class HookedCount:
    """``next()`` runs ``hook(count)``, where ``count`` advances the real counter and returns
    its value; ``repr`` is the real counter's, which is how the model reads it back."""

    def __init__(self, counter: itertools.count[int], hook: Callable[[Callable[[], int]], int]) -> None:
        self.counter = counter
        self.hook = hook

    def __iter__(self) -> HookedCount:
        return self

    def __next__(self) -> int:
        return self.hook(self.counter.__next__)

    def __repr__(self) -> str:
        return repr(self.counter)
