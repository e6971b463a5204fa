"""The models a worker process keeps loaded when jobs name different ones.

Loading a model is the slow part of transcribing (seconds, and hundreds of MB to GBs of memory), so
a worker keeps the models it used last; and since the allow-list may name more models than one
machine can hold, at most `bound` of them: the least recently used is let go before another loads.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from core.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class ResidentModels(Generic[T]):
    """At most `bound` loaded models by name, least recently used first out."""

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("a worker keeps at least one model loaded")
        self.bound = bound
        self._loaded: OrderedDict[str, T] = OrderedDict()

    def get(self, name: str, load: Callable[[], T]) -> T:
        """The model `name`, loaded by `load` unless it is resident. Room is made before loading,
        so that the process never holds more than `bound` models at once."""
        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        self._make_room(self.bound - 1)
        began = time.monotonic()
        model = load()
        self._loaded[name] = model
        log.info("model.loaded", model=name, seconds=round(time.monotonic() - began, 2), resident=self.names)
        return model

    def put(self, name: str, model: T) -> None:
        """Make `model` the resident `name` (a model loaded elsewhere), as the most recently used."""
        self._loaded.pop(name, None)
        self._make_room(self.bound - 1)
        self._loaded[name] = model

    def peek(self, name: str) -> T | None:
        """The resident model `name`, if it is, without counting as a use."""
        return self._loaded.get(name)

    def drop(self, name: str) -> None:
        self._loaded.pop(name, None)

    @property
    def names(self) -> list[str]:
        """Resident models, least recently used first."""
        return list(self._loaded)

    def _make_room(self, keep: int) -> None:
        while len(self._loaded) > keep:
            name, _ = self._loaded.popitem(last=False)
            log.info("model.evicted", model=name, resident=self.names)
