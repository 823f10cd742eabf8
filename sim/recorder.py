"""Columnar recorder: append rows to per-column lists (or whole numpy arrays), build a frame once.

Why: per-event dicts in hot loops are slow and memory hungry; columns are cheap to append and
convert to a DataFrame in one step at the end of a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


class Table:
    """One named table with a fixed column list."""

    __slots__ = ("name", "columns", "_cols", "_chunks")

    def __init__(self, name: str, columns: Sequence[str]):
        if len(set(columns)) != len(columns):
            raise ValueError(f"table {name!r}: duplicate column names in {list(columns)}")
        self.name = name
        self.columns = tuple(columns)
        self._cols: dict[str, list] = {c: [] for c in self.columns}
        self._chunks: list[dict[str, np.ndarray]] = []

    def append(self, *values) -> None:
        """Append one row, values in column order."""
        if len(values) != len(self.columns):
            raise ValueError(
                f"table {self.name!r}: got {len(values)} values for columns {self.columns}"
            )
        for c, v in zip(self.columns, values, strict=True):
            self._cols[c].append(v)

    def extend(self, **arrays: Iterable) -> None:
        """Append many rows at once from equal-length arrays (the vectorised path)."""
        missing = set(self.columns) - set(arrays)
        extra = set(arrays) - set(self.columns)
        if missing or extra:
            raise ValueError(f"table {self.name!r}: missing {sorted(missing)}, unknown {sorted(extra)}")
        chunk = {c: np.asarray(arrays[c]) for c in self.columns}
        lengths = {len(a) for a in chunk.values()}
        if len(lengths) > 1:
            raise ValueError(f"table {self.name!r}: columns of unequal length {sorted(lengths)}")
        self._flush()
        self._chunks.append(chunk)

    def extend_columns(self, *arrays: np.ndarray) -> None:
        """`extend` for hot loops: numpy arrays in column order, of equal length (unchecked)."""
        if self._cols[self.columns[0]]:
            self._flush()
        self._chunks.append(dict(zip(self.columns, arrays, strict=True)))

    def _flush(self) -> None:
        if self._cols[self.columns[0]]:
            self._chunks.append({c: np.asarray(self._cols[c]) for c in self.columns})
            self._cols = {c: [] for c in self.columns}

    def __len__(self) -> int:
        return sum(len(ch[self.columns[0]]) for ch in self._chunks) + len(self._cols[self.columns[0]])

    def to_frame(self) -> pd.DataFrame:
        self._flush()
        if not self._chunks:
            return pd.DataFrame({c: [] for c in self.columns})
        return pd.DataFrame({c: np.concatenate([ch[c] for ch in self._chunks]) for c in self.columns})


class Recorder:
    """A set of named tables."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}

    def table(self, name: str, columns: Sequence[str] | None = None) -> Table:
        """Get a table, creating it on first use (then `columns` is required)."""
        t = self.tables.get(name)
        if t is None:
            if columns is None:
                raise KeyError(f"no table {name!r} yet and no columns given")
            t = self.tables[name] = Table(name, columns)
        elif columns is not None and tuple(columns) != t.columns:
            raise ValueError(f"table {name!r} exists with columns {t.columns}")
        return t

    def frames(self) -> dict[str, pd.DataFrame]:
        return {n: t.to_frame() for n, t in self.tables.items()}
