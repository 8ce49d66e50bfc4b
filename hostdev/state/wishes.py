"""Standing wishes of the operator: persistent detaches and VF counts.

The lists of the state directory (``/run/hostdev``) describe the host as it is
and vanish at reboot, as they should. A wish ("this GPU always sits on
vfio-pci", "this PF always has 8 VFs") is configuration: it lives in
``wishes.json`` of the configuration directory (``/etc/hostdev``), a small
versioned file read and replaced with the same checks as the state file (see
:mod:`hostdev.state.files`), but world-readable (0644): it holds no secret,
and a user may read root's (``hostdev wishes``), though only root changes it.

Addresses can move across reboots (a card moved to another slot, a BIOS
renumbering the buses), so each wish names its device by address, by
vendor:device and, when the device has one, by its VPD serial number. A wish
whose address holds another device is never applied.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hostdev.address import PciAddress
from hostdev.errors import StateCorrupt, StateUnusable
from hostdev.ids import Hex16
from hostdev.state import files as statedir
from hostdev.state.records import DriverName, PrintableText

WISHES_NAME = "wishes.json"
WISHES_FORMAT = "hostdev-wishes"
WISHES_VERSION = 1
_WHAT = "wishes file"
_DIR = "configuration directory"


def default_config_dir(root: str | os.PathLike[str] = "/") -> Path:
    """``/etc/hostdev``, under ``root`` when it is not ``/``."""
    root_path = Path(root)
    return Path("/etc/hostdev") if root_path == Path("/") else root_path / "etc" / "hostdev"


class DeviceIdentity(BaseModel):
    """What names a device across reboots: its address, ids and serial number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: PciAddress
    vendor: Hex16
    device: Hex16
    #: The VPD serial number (``SN``), None when the device has none. Printable: hostdev
    #: reads it escaped (:mod:`hostdev.linux.vpd`), and prints it in its lines.
    serial: Annotated[PrintableText, Field(max_length=255)] | None = None

    def mismatch(self, found: DeviceIdentity) -> str | None:
        """Why ``found`` (the device now at the address) is not this one; None if it is."""
        if (found.vendor, found.device) != (self.vendor, self.device):
            return (f"{self.address} now holds {found.vendor:04x}:{found.device:04x}, not"
                    f" {self.vendor:04x}:{self.device:04x}")
        if self.serial is not None and found.serial != self.serial:
            now = "no readable serial" if found.serial is None else f"serial {found.serial!r}"
            return f"{self.address} now has {now}, not serial {self.serial!r}"
        return None


class DetachWish(BaseModel):
    """Keep a device on a stub driver, tracked inactive (``node_detach``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: DeviceIdentity
    stub_driver: DriverName = "vfio-pci"


class VfCountWish(BaseModel):
    """Give a PF this many VFs (``set_num_vfs``); a wish of 0 is never stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: DeviceIdentity
    num_vfs: int = Field(ge=1, le=65535)


#: A wish of either kind.
Wish = VfCountWish | DetachWish


class Wishes(BaseModel):
    """What ``wishes.json`` holds: one wish of each kind per address at most."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["hostdev-wishes"] = "hostdev-wishes"
    version: Literal[1] = 1
    sriov: list[VfCountWish] = Field(default_factory=list)
    detach: list[DetachWish] = Field(default_factory=list)

    def set_detach(self, wish: DetachWish) -> None:
        """Add ``wish``, replacing any detach wish for its address."""
        self.forget_detach(wish.device.address)
        self.detach = sorted([*self.detach, wish], key=lambda w: w.device.address)

    def detach_of(self, address: PciAddress) -> DetachWish | None:
        """The detach wish for ``address``, if there is one."""
        return next((w for w in self.detach if w.device.address == address), None)

    def vf_count_of(self, address: PciAddress) -> VfCountWish | None:
        """The VF count wish for ``address``, if there is one."""
        return next((w for w in self.sriov if w.device.address == address), None)

    def now_of(self, wish: Wish) -> Wish | None:
        """The wish of ``wish``'s kind for its address as these wishes hold it (another
        count or driver, or the same), None when they hold none."""
        address = wish.device.address
        if isinstance(wish, VfCountWish):
            return self.vf_count_of(address)
        return self.detach_of(address)

    def forget_detach(self, address: PciAddress) -> bool:
        """Drop the detach wish for ``address``; whether there was one."""
        kept = [w for w in self.detach if w.device.address != address]
        dropped = len(kept) != len(self.detach)
        self.detach = kept
        return dropped

    def set_vf_count(self, device: DeviceIdentity, count: int) -> None:
        """Wish ``count`` VFs on ``device`` (0: drop its wish)."""
        self.sriov = [w for w in self.sriov if w.device.address != device.address]
        if count:
            self.sriov = sorted([*self.sriov, VfCountWish(device=device, num_vfs=count)],
                                key=lambda w: w.device.address)


class WishStore:
    """``wishes.json`` in a configuration directory: checked reads, atomic 0644 writes.

    The directory and the file must be writable by no one but their owner, as
    the state directory's (a file anyone may edit would let them choose which
    devices leave the host at boot). To change the wishes, the owner must be
    the caller. To only read them, root will do too: a user may list root's
    ``/etc/hostdev`` wishes, never one another's.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / WISHES_NAME

    def load(self, *, for_update: bool = False) -> Wishes:
        """The wishes; none when the directory or the file does not exist.

        StateUnusable or StateCorrupt (naming the file, which is left as it is)
        when it cannot be trusted or does not parse. ``for_update``: the wishes
        are to be changed and saved, so the directory and the file must be the
        caller's own (otherwise root's are read too), and a caller who could
        not save is refused before anything is done.
        """
        root_ok = not for_update
        if not statedir.check_dir(self.dir, _DIR, root_ok=root_ok):
            return Wishes()
        found = statedir.read_file(self.path, _WHAT, root_ok=root_ok)
        if found is None:
            return Wishes()
        doc = statedir.check_header(statedir.parse_json(found[0], self.path, _WHAT),
                                    self.path, _WHAT, WISHES_FORMAT, WISHES_VERSION)
        try:
            wishes = Wishes.model_validate(doc)
        except ValidationError as exc:
            raise StateCorrupt(f"{_WHAT} {self.path} is damaged {statedir.damage(exc.errors())};"
                               " it was left as it is: fix it or move it aside") from None
        for kind in (wishes.sriov, wishes.detach):
            addresses = [w.device.address for w in kind]
            if len(set(addresses)) != len(addresses):
                twice = next(a for a in addresses if addresses.count(a) > 1)
                raise StateCorrupt(f"{_WHAT} {self.path} names {twice} twice; it was left as"
                                   " it is: keep one entry per device")
        return wishes

    def save(self, wishes: Wishes) -> None:
        """Atomically replace the file (0644), creating the directory (0755) if needed."""
        try:
            if not os.path.lexists(self.dir):
                os.makedirs(self.dir, mode=0o755)
                os.chmod(self.dir, 0o755)  # readable by all, whatever the umask
        except OSError as exc:
            if not os.path.lexists(self.dir):
                raise StateUnusable(f"cannot create configuration directory {self.dir}:"
                                    f" {exc.strerror}; pass a writable config_dir"
                                    " (or --config-dir)") from None
        statedir.check_dir(self.dir, _DIR)
        data = wishes.model_dump_json(indent=2).encode() + b"\n"
        statedir.replace_file(self.path, data, _WHAT, mode=0o644)
