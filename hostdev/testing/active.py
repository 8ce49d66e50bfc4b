"""Which fake kernel the library is talking to now.

The library's boundary modules offer seams (a bounded write's helper, the
uevent socket) that the fake kernel answers only for a filesystem it runs. While
pyfakefs is active the library's ``os`` is pyfakefs's fake os module, whose
filesystem names the fake kernel.
"""

from __future__ import annotations

import threading
import weakref

from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.linux import sysfs as sysfs_module
from hostdev.testing.model import KernelState

#: Fake kernels by filesystem.
_STATES: weakref.WeakKeyDictionary[FakeFilesystem, KernelState] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def track(state: KernelState) -> None:
    """Answer for ``state``'s filesystem from now on."""
    with _LOCK:
        _STATES[state.fs] = state


def active_state() -> KernelState | None:
    """The fake kernel behind the library's sysfs boundary now (None: a real one)."""
    fs = getattr(vars(sysfs_module).get("os"), "filesystem", None)
    return _STATES.get(fs) if isinstance(fs, FakeFilesystem) else None
