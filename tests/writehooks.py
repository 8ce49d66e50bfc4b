"""Hooks on the library's sysfs writes, for tests that act at the k-th write."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hostdev.address import PciAddress
from hostdev.linux.sysfs import Sysfs

Hook = Callable[[str, PciAddress | None], object]  # what it returns is ignored


@contextmanager
def _watching(hook: Callable[[str, PciAddress | None, list[str]], object]
              ) -> Iterator[list[str]]:
    """Call ``hook(path, address, seen)`` before every sysfs write from now on, with
    ``seen`` the paths written so far (this one last); yields ``seen``."""
    original = Sysfs.write
    seen: list[str] = []

    def write(self: Sysfs, path: str, value: str, address: PciAddress | None = None,
              **options: Any) -> None:
        seen.append(path)
        hook(path, address, seen)
        original(self, path, value, address, **options)

    Sysfs.write = write  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Sysfs.write = original  # type: ignore[method-assign]


@contextmanager
def on_write(k: int, hook: Hook) -> Iterator[list[str]]:
    """Call ``hook(path, address)`` just before the k-th (1-based) sysfs write from now.

    Yields the list of paths written so far (it grows as writes happen).
    """
    def at_k(path: str, address: PciAddress | None, seen: list[str]) -> None:
        if len(seen) == k:
            hook(path, address)

    with _watching(at_k) as seen:
        yield seen


@contextmanager
def before_write(suffix: str, hook: Callable[[], None]) -> Iterator[list[str]]:
    """Run ``hook`` just before the first sysfs write to a path ending in ``suffix``."""
    def first(path: str, address: PciAddress | None, seen: list[str]) -> None:
        if path.endswith(suffix) and not any(p.endswith(suffix) for p in seen[:-1]):
            hook()

    with _watching(first) as seen:
        yield seen


def count_writes(action: Callable[[], object]) -> int:
    """How many sysfs writes ``action`` makes."""
    with on_write(0, lambda path, address: None) as seen:
        action()
    return len(seen)
