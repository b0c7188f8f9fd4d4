"""A fixed-size ring of samples: one ``array('d')`` per column, so an hour of points costs
8 bytes per value whatever happens (no Python object per point), and the oldest point is
overwritten when the ring is full. A missing value (a stopped unit has no CPU) is NaN, served
as ``null`` so a chart shows a gap, not a zero."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence


class Ring:
    def __init__(self, columns: Sequence[str], capacity: int):
        if capacity < 1:
            raise ValueError("a ring holds at least one point")
        self.columns = ("t", *columns)
        self.capacity = capacity
        self._data = [array("d", bytes(8 * capacity)) for _ in self.columns]
        self._next = 0
        self.size = 0

    def append(self, t: float, values: Sequence[float | None]) -> None:
        if len(values) != len(self.columns) - 1:
            raise ValueError(f"expected {len(self.columns) - 1} values, got {len(values)}")
        at = self._next
        self._data[0][at] = t
        for column, value in zip(self._data[1:], values, strict=True):
            column[at] = math.nan if value is None else float(value)
        self._next = (at + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _order(self, since: float | None) -> list[int]:
        start = (self._next - self.size) % self.capacity
        order = [(start + k) % self.capacity for k in range(self.size)]
        if since is not None:
            times = self._data[0]
            order = [k for k in order if times[k] > since]
        return order

    def columns_since(self, since: float | None = None) -> dict[str, list[float | None]]:
        """Every column, oldest first (uPlot's data layout): ``{"t": [...], "cpu": [...]}``."""
        order = self._order(since)
        result: dict[str, list[float | None]] = {}
        for name, column in zip(self.columns, self._data, strict=True):
            result[name] = [None if math.isnan(column[k]) else column[k] for k in order]
        return result

    def last(self) -> dict[str, float | None] | None:
        if not self.size:
            return None
        at = (self._next - 1) % self.capacity
        return {name: None if math.isnan(column[at]) else column[at]
                for name, column in zip(self.columns, self._data, strict=True)}

    def nbytes(self) -> int:
        return sum(column.itemsize * len(column) for column in self._data)
