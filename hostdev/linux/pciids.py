"""Vendor and device names from the system's ``pci.ids`` (as lspci shows them).

Optional: a host without the file gets no names, never an error. The file
(about 1.3 MB) is read once and searched only for the ids asked for, with byte
searches rather than a parse of its 40,000 lines. It is looked for under the
root (``usr/share/misc/pci.ids``, then ``usr/share/hwdata/pci.ids``); a copy
whose links lead out of the root is ignored.
"""

from __future__ import annotations

import os

#: Where distributions install the file, relative to the root.
PCI_IDS_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")
#: Bytes read at most (the file is about 1.3 MB).
_LIMIT = 16 << 20
#: What starts the line after a vendor's block: another vendor, or the classes.
_BLOCK_ENDS = (*(f"\n{c}".encode() for c in "0123456789abcdef"), b"\nC ")


class PciIds:
    """Names of the ids of one ``pci.ids`` file (empty when there is none)."""

    def __init__(self, data: bytes = b"") -> None:
        self._data = b"\n" + data
        #: vendor -> (end of its line, its name); (-1, None) when it is not listed.
        self._vendors: dict[int, tuple[int, str | None]] = {}

    def vendor_name(self, vendor: int) -> str | None:
        """The vendor's name, or None."""
        found = self._vendors.get(vendor)
        if found is None:
            data = self._data
            key = b"\n%04x  " % vendor
            at = data.find(key)
            if at < 0:
                found = (-1, None)
            else:
                stop = data.find(b"\n", at + 1)
                name = data[at + len(key):stop].decode("utf-8", "replace").strip()
                found = (stop, name or None)
            self._vendors[vendor] = found
        return found[1]

    def device_name(self, vendor: int, device: int) -> str | None:
        """The device's name, or None."""
        self.vendor_name(vendor)
        start = self._vendors[vendor][0]
        if start < 0:
            return None
        data = self._data
        key = b"\n\t%04x  " % device
        at = data.find(key, start)
        # Found in the vendor's block only if no vendor (or class) line comes first.
        if at < 0 or any(data.find(h, start, at) >= 0 for h in _BLOCK_ENDS):
            return None
        stop = data.find(b"\n", at + len(key))
        return data[at + len(key):stop].decode("utf-8", "replace").strip() or None

    def name(self, vendor: int, device: int) -> str | None:
        """``Vendor Device`` as lspci prints it (``Vendor Device 1234`` for an unlisted
        device), or None when the vendor is not listed."""
        vendor_name = self.vendor_name(vendor)
        if vendor_name is None:
            return None
        return f"{vendor_name} {self.device_name(vendor, device) or f'Device {device:04x}'}"


def load_pci_ids(root: str | os.PathLike[str] = "/") -> PciIds:
    """The names of the system's ``pci.ids`` under ``root``; empty when it has none."""
    base = os.path.realpath(os.fspath(root))
    for relative in PCI_IDS_PATHS:
        path = os.path.join(os.fspath(root), relative)
        try:
            real = os.path.realpath(path)
            if real != base and not real.startswith(base.rstrip("/") + "/"):
                continue  # leads out of the root: not this system's file
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            chunks = []
            size = 0
            while size < _LIMIT and (chunk := os.read(fd, 1 << 20)):
                chunks.append(chunk)
                size += len(chunk)
        except OSError:
            continue
        finally:
            os.close(fd)
        return PciIds(b"".join(chunks))
    return PciIds()
