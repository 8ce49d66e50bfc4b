"""Injected failures: refused writes, failing probes, a crash after N writes, and
a test's own hook run as a write reaches the kernel.

Tests arm these through :class:`~hostdev.testing.FakeKernel`; the write pipeline
and the probe path consult them. A fault that runs out of uses disarms itself.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

from hostdev.address import PciAddress

#: What a write watch calls: the written file (``/sys/bus/pci/devices/<addr>/...``
#: form for a device attribute) and the device the write is about (the file's
#: device, or the address written to ``bind``, ``unbind`` or ``drivers_probe``).
WriteHook = Callable[[str, PciAddress | None], object]


class Fault:
    """An armed fault; ``remaining`` counts the uses left (None: unlimited)."""

    def __init__(self, errno: int, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        self.errno = errno
        self.remaining = times
        self.hits = 0
        self.cancelled = False

    @property
    def active(self) -> bool:
        """Whether the fault will still fire."""
        return not self.cancelled and (self.remaining is None or self.remaining > 0)

    def cancel(self) -> None:
        """Disarm the fault."""
        self.cancelled = True

    def fire(self) -> int:
        """Use the fault once and return its errno."""
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1
        return self.errno


class WriteFault(Fault):
    """``fail_write``: writes whose path matches ``pattern`` fail with ``errno``."""

    def __init__(self, pattern: str, errno: int, times: int | None) -> None:
        super().__init__(errno, times)
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"WriteFault({self.pattern!r}, errno={self.errno}, remaining={self.remaining})"


class ProbeFault(Fault):
    """``fail_probe``: the driver's probe returns ``-errno``."""

    def __init__(self, driver: str, errno: int, times: int | None) -> None:
        super().__init__(errno, times)
        self.driver = driver

    def __repr__(self) -> str:
        return f"ProbeFault({self.driver!r}, errno={self.errno}, remaining={self.remaining})"


class WriteWatch:
    """``watch_writes``: sees every write that reaches the kernel from now on, and
    calls a hook before one of them takes effect (before ``fail_write`` faults are
    consulted, so a hook may arm one for this very write).

    ``seen``: the paths written so far, this one last. The hook runs before the
    ``at``-th write (1-based), or before the first write whose path matches the glob
    ``match``, or never (a watch that only counts). Writes a hook makes itself are
    not watched. Used as a context manager, the watch is disarmed on exit.
    """

    def __init__(self, hook: WriteHook | None, at: int | None, match: str | None) -> None:
        if at is not None and match is not None:
            raise ValueError("a write watch fires at the k-th write or at a match, not both")
        if at is not None and at < 1:
            raise ValueError("at must be >= 1")
        self.hook = hook
        self.at = at
        self.match = match
        self.seen: list[str] = []
        self.fired = False
        self.cancelled = False

    def cancel(self) -> None:
        """Disarm the watch."""
        self.cancelled = True

    def __enter__(self) -> WriteWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def due(self, path: str, alias: str) -> bool:
        """Count a write; whether the hook runs before it."""
        self.seen.append(alias)
        if self.hook is None or self.fired:
            return False
        if self.at is not None:
            hit = len(self.seen) == self.at
        else:
            hit = self.match is not None and (fnmatchcase(path, self.match)
                                              or fnmatchcase(alias, self.match))
        self.fired = hit
        return hit


class FaultInjector:
    """The faults armed on one fake kernel."""

    def __init__(self) -> None:
        self.write_faults: list[WriteFault] = []
        self.probe_faults: dict[str, list[ProbeFault]] = {}
        self.crash_countdown: int | None = None
        self.watches: list[WriteWatch] = []
        self._in_hook = False

    def add_watch(self, hook: WriteHook | None, at: int | None, match: str | None
                  ) -> WriteWatch:
        """Arm a write watch."""
        watch = WriteWatch(hook, at, match)
        self.watches.append(watch)
        return watch

    def before_write(self, path: str, alias: str,
                     address: Callable[[], PciAddress | None]) -> None:
        """Show a write to the armed watches and run the hooks that are due."""
        if not self.watches or self._in_hook:
            return
        self.watches = [w for w in self.watches if not w.cancelled]
        due = [w for w in self.watches if w.due(path, alias)]
        if not due:
            return
        self._in_hook = True
        try:
            for watch in due:
                assert watch.hook is not None
                watch.hook(alias, address())
        finally:
            self._in_hook = False

    def add_write_fault(self, pattern: str, errno: int, times: int | None) -> WriteFault:
        """Arm a write fault."""
        fault = WriteFault(pattern, errno, times)
        self.write_faults.append(fault)
        return fault

    def add_probe_fault(self, driver: str, errno: int, times: int | None) -> ProbeFault:
        """Arm a probe fault."""
        fault = ProbeFault(driver, errno, times)
        self.probe_faults.setdefault(driver, []).append(fault)
        return fault

    def write_error(self, *paths: str) -> int | None:
        """The errno of the first armed write fault matching any of ``paths``, used once."""
        if not self.write_faults:
            return None
        self.write_faults = [f for f in self.write_faults if f.active]
        for fault in self.write_faults:
            if any(fnmatchcase(path, fault.pattern) for path in paths):
                return fault.fire()
        return None

    def probe_error(self, driver: str) -> int | None:
        """The errno an armed probe fault makes ``driver``'s probe return, used once."""
        faults = self.probe_faults.get(driver)
        if not faults:
            return None
        for fault in faults:
            if fault.active:
                return fault.fire()
        return None

    def count_success(self) -> bool:
        """Count one successful write; True when the armed crash is due now."""
        if self.crash_countdown is None:
            return False
        self.crash_countdown -= 1
        if self.crash_countdown <= 0:
            self.crash_countdown = None
            return True
        return False
