"""Hooks on the library's sysfs writes, for tests that act at the k-th write."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hostdev.address import PciAddress
from hostdev.linux.sysfs import Sysfs

Hook = Callable[[str, PciAddress | None], object]  # what it returns is ignored


@contextmanager
def on_write(k: int, hook: Hook) -> Iterator[list[str]]:
    """Call ``hook(path, address)`` just before the k-th (1-based) sysfs write from now.

    Yields the list of paths written so far (it grows as writes happen).
    """
    original = Sysfs.write
    seen: list[str] = []

    def write(self: Sysfs, path: str, value: str, address: PciAddress | None = None,
              **options: Any) -> None:
        seen.append(path)
        if len(seen) == k:
            hook(path, address)
        original(self, path, value, address, **options)

    Sysfs.write = write  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Sysfs.write = original  # type: ignore[method-assign]


def count_writes(action: Callable[[], object]) -> int:
    """How many sysfs writes ``action`` makes."""
    with on_write(0, lambda path, address: None) as seen:
        action()
    return len(seen)
