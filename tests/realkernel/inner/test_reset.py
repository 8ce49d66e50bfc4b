"""reset and reset_method on a real VF and PF (docs/kernel-model.md §5, 7.1)."""

from __future__ import annotations

import pytest

from . import guest
from .guest import dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def test_reset_values(pf: str, observe: Observer) -> None:
    """reset accepts only 1; an unbound VF with FLR resets fine."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    path = dev(vf) / "reset"
    for bad in ("0", "2", "abc"):
        observe.check(f"reset {bad!r}", guest.write(path, bad), "EINVAL", "5 reset")
    result, seconds = guest.timed_write(path, "1")
    observe.check("reset 1 on an unbound VF", result, "ok", "5 reset")
    observe.record("VF reset took (s)", round(seconds, 3))
    observe.check("reset never binds", guest.driver_of(vf), None, "5")


def test_reset_method_clear_default_and_errors(pf: str, observe: Observer) -> None:
    """Clear gives an empty read and ENOTTY resets; default restores; bad lists are EINVAL."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    d = dev(vf)
    original = guest.read(d / "reset_method")
    observe.record("VF reset_method", original)
    observe.check("clear with \\n", guest.write(d / "reset_method", "\n"), "ok", "5")
    observe.check("reads empty after clear", guest.read(d / "reset_method"), "", "5 0 bytes")
    observe.check("reset file still there", (d / "reset").exists(), True, "5 visibility fixed")
    observe.check("reset with no method", guest.write(d / "reset", "1"), "ENOTTY", "5")
    observe.check("default", guest.write(d / "reset_method", "default"), "ok", "5")
    observe.check("reads the probed list again", guest.read(d / "reset_method"), original, "5")
    observe.check("unknown name", guest.write(d / "reset_method", "bogus"), "EINVAL", "5")
    observe.check("unsupported method (acpi)", guest.write(d / "reset_method", "acpi"), "EINVAL",
                  "5")
    observe.check("too many names", guest.write(d / "reset_method", " ".join(["flr"] * 8)),
                  "EINVAL", "5 too many")
    observe.check("list unchanged after errors", guest.read(d / "reset_method"), original, "5")
    first = original.split()[0] if original.split() else "flr"
    observe.check(f"set {first!r}", guest.write(d / "reset_method", first), "ok", "5")
    observe.check(f"reads {first!r}", guest.read(d / "reset_method"), f"{first}\n", "5")
    guest.must(d / "reset_method", "default")


def test_pf_reset_method_subset(pf: str, observe: Observer) -> None:
    """A PF's list can be narrowed to one supported method and restored with default."""
    d = dev(pf)
    original = guest.read(d / "reset_method")
    names = original.split()
    try:
        if len(names) < 2:
            pytest.skip(f"PF has fewer than two reset methods ({original!r})")
        last = names[-1]
        observe.check(f"set {last!r}", guest.write(d / "reset_method", last), "ok", "5")
        observe.check(f"reads {last!r}", guest.read(d / "reset_method"), f"{last}\n", "5")
        order = " ".join(reversed(names))
        observe.check(f"set reversed {order!r}", guest.write(d / "reset_method", order), "ok",
                      "5 a space-separated list")
        observe.record("after a reversed list", guest.read(d / "reset_method"))
    finally:
        guest.must(d / "reset_method", "default")
    observe.check("default restores", guest.read(d / "reset_method"), original, "5")
