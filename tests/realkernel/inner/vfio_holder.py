"""A VFIO user for the inner tests: holds a VF's device fd until told to let go.

Run as ``python vfio_holder.py ADDRESS GROUP [nodevice|mmap]``. It opens the legacy container
and the group, sets the container and the type-1 IOMMU, gets the device fd with
VFIO_GROUP_GET_DEVICE_FD (ioctls through ctypes so the returned fd is kept; not with
``nodevice``); with ``mmap`` it then maps the first page of BAR0 (region info ioctl, then
libc mmap, which keeps no fd of its own, unlike Python's mmap) and closes every fd, so only
the mapping holds the device. It prints
one JSON line describing what it holds, then waits for a line on stdin and closes
everything. Errors are printed as a JSON line with an ``error`` key.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

VFIO_TYPE = ord(";")  # 0x3b
VFIO_BASE = 100


def _io(nr: int) -> int:
    return (VFIO_TYPE << 8) | (VFIO_BASE + nr)


VFIO_GET_API_VERSION = _io(0)  # 0x3b64
VFIO_CHECK_EXTENSION = _io(1)  # 0x3b65
VFIO_SET_IOMMU = _io(2)  # 0x3b66
VFIO_GROUP_GET_STATUS = _io(3)  # 0x3b67
VFIO_GROUP_SET_CONTAINER = _io(4)  # 0x3b68
VFIO_GROUP_GET_DEVICE_FD = _io(6)  # 0x3b6a
VFIO_DEVICE_GET_REGION_INFO = _io(8)  # 0x3b6c
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
PROT_READ, PROT_WRITE, MAP_SHARED = 1, 2, 1
VFIO_TYPE1_IOMMU = 1
VFIO_GROUP_FLAGS_VIABLE = 1


class GroupStatus(ctypes.Structure):
    """struct vfio_group_status."""

    _fields_ = (("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32))


class RegionInfo(ctypes.Structure):
    """struct vfio_region_info."""

    _fields_ = (("argsz", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("index", ctypes.c_uint32), ("cap_offset", ctypes.c_uint32),
                ("size", ctypes.c_uint64), ("offset", ctypes.c_uint64))


def _map_bar0(libc: ctypes.CDLL, device: int, report: dict[str, object]) -> tuple[int, int]:
    """Map BAR0's first page through the device fd; return (address, length)."""
    info = RegionInfo(ctypes.sizeof(RegionInfo), 0, 0, 0, 0, 0)
    _ioctl(libc, device, VFIO_DEVICE_GET_REGION_INFO, ctypes.byref(info))
    report["bar0"] = {"size": info.size, "mmap": bool(info.flags & VFIO_REGION_INFO_FLAG_MMAP)}
    length = min(int(info.size), 4096)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long)
    address = libc.mmap(None, length, PROT_READ | PROT_WRITE, MAP_SHARED, device, info.offset)
    if address in (None, ctypes.c_void_p(-1).value):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of BAR0: {os.strerror(err)}")
    return int(address), length


def _ioctl(libc: ctypes.CDLL, fd: int, request: int, arg: object) -> int:
    result = int(libc.ioctl(fd, request, arg))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ioctl 0x{request:x}: {os.strerror(err)}")
    return result


def main(argv: list[str]) -> int:
    """Hold the device, report, wait for stdin, release; return the exit status."""
    address, group = argv[1], argv[2]
    want_device = argv[3:4] != ["nodevice"]
    want_map = argv[3:4] == ["mmap"]
    mapping: tuple[int, int] | None = None
    libc = ctypes.CDLL(None, use_errno=True)
    fds: list[int] = []
    report: dict[str, object] = {"pid": os.getpid()}
    try:
        container = os.open("/dev/vfio/vfio", os.O_RDWR)
        fds.append(container)
        report["api_version"] = _ioctl(libc, container, VFIO_GET_API_VERSION, 0)
        report["type1"] = _ioctl(libc, container, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU)
        group_fd = os.open(f"/dev/vfio/{group}", os.O_RDWR)
        fds.append(group_fd)
        status = GroupStatus(ctypes.sizeof(GroupStatus), 0)
        _ioctl(libc, group_fd, VFIO_GROUP_GET_STATUS, ctypes.byref(status))
        report["viable"] = bool(status.flags & VFIO_GROUP_FLAGS_VIABLE)
        _ioctl(libc, group_fd, VFIO_GROUP_SET_CONTAINER, ctypes.byref(ctypes.c_int(container)))
        _ioctl(libc, container, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU)
        report.update(container=container, group=group_fd)
        if want_device:
            device = _ioctl(libc, group_fd, VFIO_GROUP_GET_DEVICE_FD,
                            ctypes.c_char_p(address.encode()))
            fds.append(device)
            report["device"] = device
        if want_map:
            mapping = _map_bar0(libc, fds[-1], report)
            report["mapped"] = mapping[1]
            for fd in reversed(fds):
                os.close(fd)
            report["fds_closed"] = len(fds)
            fds = []
    except OSError as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["errno"] = exc.errno
    print(json.dumps(report), flush=True)
    sys.stdin.readline()
    for fd in reversed(fds):
        os.close(fd)
    if mapping is not None:
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.munmap(ctypes.c_void_p(mapping[0]), mapping[1])
    print(json.dumps({"closed": len(fds), "unmapped": mapping is not None}), flush=True)
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
