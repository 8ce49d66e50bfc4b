"""Injected failures: refused writes, failing probes, a crash after N writes.

Tests arm these through :class:`~hostdev.testing.FakeKernel`; the write pipeline
and the probe path consult them. A fault that runs out of uses disarms itself.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


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


class FaultInjector:
    """The faults armed on one fake kernel."""

    def __init__(self) -> None:
        self.write_faults: list[WriteFault] = []
        self.probe_faults: dict[str, list[ProbeFault]] = {}
        self.crash_countdown: int | None = None

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
