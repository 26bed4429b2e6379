"""Progress for long work: a tqdm bar on a terminal, plain periodic lines otherwise.

A bar redrawn with carriage returns is unreadable in a log file, a CI log or a pipe, so when stderr is not a
terminal (or tqdm is not installed: the runtime does not depend on it) `progress` prints `desc: i/n (x%)` at most
every few seconds, and once at the end.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
EVERY_S = 5.0


def _human(n: float, unit: str) -> str:
    if unit != "B":
        return f"{int(n)}"
    for suffix in ("B", "kB", "MB", "GB"):
        if n < 1000 or suffix == "GB":
            return f"{n:.0f} {suffix}" if suffix == "B" else f"{n:.1f} {suffix}"
        n /= 1000.0
    return f"{n:.1f} GB"


class PlainProgress:
    """`desc: i/n (x%)` on `file` at most every `every` seconds and when closed; a tqdm-like update/close API."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", every: float = EVERY_S, file=None):
        self.desc, self.total, self.unit, self.every = desc, total, unit, every
        self.file = file or sys.stderr
        self.n = 0
        self._last = time.monotonic()
        self._printed_at: int | None = None

    def line(self) -> str:
        done = _human(self.n, self.unit)
        if self.total:
            pct = 100.0 * self.n / self.total
            return f"{self.desc}: {done}/{_human(self.total, self.unit)} ({pct:.0f}%)"
        return f"{self.desc}: {done}{'' if self.unit in ('it', 'B') else ' ' + self.unit}"

    def _print(self) -> None:
        print(self.line(), file=self.file, flush=True)
        self._printed_at = self.n
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._print()

    def close(self) -> None:
        if self._printed_at != self.n:
            self._print()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _tqdm(desc: str, total: int | None, unit: str, file):
    if not getattr(file, "isatty", lambda: False)():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(desc=desc, total=total, unit=unit, file=file, leave=False, dynamic_ncols=True,
                unit_scale=unit == "B", unit_divisor=1000)


def bar(desc: str, total: int | None = None, unit: str = "it", file=None, every: float = EVERY_S):
    """A progress object with update(n) and close(): tqdm on a terminal, PlainProgress otherwise."""
    file = file or sys.stderr
    return _tqdm(desc, total, unit, file) or PlainProgress(desc, total, unit, every, file)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it", file=None,
             every: float = EVERY_S) -> Iterator[T]:
    """Iterate `iterable` showing progress on stderr (see the module docstring)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    shown = bar(desc, total, unit, file, every)
    try:
        for item in iterable:
            yield item
            shown.update(1)
    finally:
        shown.close()
