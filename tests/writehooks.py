"""Hooks on the library's kernel writes, for tests that act at the k-th write.

Both kinds count: sysfs writes (by path) and netlink writes of VF settings, named
``netlink:IF/vfN/FIELD`` (:func:`hostdev.linux.netlink.write_path`), which is also
the name the fake kernel's ``fail_write`` matches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hostdev.address import PciAddress
from hostdev.linux import netlink
from hostdev.linux.sysfs import Sysfs

Hook = Callable[[str, PciAddress | None], object]  # what it returns is ignored


@contextmanager
def _watching(hook: Callable[[str, PciAddress | None, list[str]], object]
              ) -> Iterator[list[str]]:
    """Call ``hook(path, address, seen)`` before every kernel write from now on, with
    ``seen`` the paths written so far (this one last); yields ``seen``."""
    original = Sysfs.write
    original_vf = netlink.write_vf
    seen: list[str] = []

    def write(self: Sysfs, path: str, value: str, address: PciAddress | None = None,
              **options: Any) -> None:
        seen.append(path)
        hook(path, address, seen)
        original(self, path, value, address, **options)

    def write_vf(sysfs: Sysfs, ifname: str, index: int, field: str, values: dict[str, Any],
                 address: PciAddress | None = None) -> None:
        path = netlink.write_path(ifname, index, field)
        seen.append(path)
        hook(path, address, seen)
        original_vf(sysfs, ifname, index, field, values, address)

    Sysfs.write = write  # type: ignore[method-assign]
    netlink.write_vf = write_vf
    try:
        yield seen
    finally:
        Sysfs.write = original  # type: ignore[method-assign]
        netlink.write_vf = original_vf


@contextmanager
def on_write(k: int, hook: Hook) -> Iterator[list[str]]:
    """Call ``hook(path, address)`` just before the k-th (1-based) kernel write from now.

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
    """How many kernel writes (sysfs and netlink) ``action`` makes."""
    with on_write(0, lambda path, address: None) as seen:
        action()
    return len(seen)
