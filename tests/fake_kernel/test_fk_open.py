"""open() and write() of sysfs attributes as the real 6.1 kernel does them.

Pinned from the real-kernel tier (tests/realkernel/differential): kernfs checks the
mode at open (EACCES even for root), and each write() reaches the store handler
with exactly its own bytes, whatever the offset and whether O_TRUNC was given
(docs/kernel-model.md §0).
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.helpers import reset_ids, set_uid

from hostdev.testing import FakeKernel

from .hostlib import DEVICES, GPU, NIC, NOGROUP, NVME, PF, Sys, vf_addresses


def _write_no_trunc(path: str, *chunks: bytes) -> None:
    """os.open with O_WRONLY only (as the inner real-kernel tests do), one write per chunk."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for chunk in chunks:
            assert os.write(fd, chunk) == len(chunk)
    finally:
        os.close(fd)


def _open_errno(path: str, flags: int) -> int:
    with pytest.raises(OSError) as info:
        os.close(os.open(path, flags))
    assert info.value.errno is not None
    return info.value.errno


# ----------------------------------------------------------------- one write, one store


def test_write_without_o_trunc_is_not_merged_with_the_old_value(
    host: FakeKernel, sysfs: Sys
) -> None:
    override = sysfs.dev(GPU, "driver_override")
    sysfs.write(override, "vfio-pci\n")
    _write_no_trunc(override, b"x")
    assert sysfs.read(override) == "x\n"  # not "xfio-pci"
    assert host.writes[-1].value == "x"


def test_reset_method_without_o_trunc(host: FakeKernel, sysfs: Sys) -> None:
    path = sysfs.dev(PF, "reset_method")
    assert sysfs.read(path) == "flr bus\n"
    _write_no_trunc(path, b"bus")
    assert sysfs.read(path) == "bus\n"  # not "bus bus"
    _write_no_trunc(path, b"flr")
    _write_no_trunc(path, b"\n")  # clears, not EINVAL from "\nlr"
    assert sysfs.read(path) == ""
    assert sysfs.errno(sysfs.dev(PF, "reset"), "1") == errno.ENOTTY


def test_every_write_on_one_fd_is_its_own_store(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    _write_no_trunc(override, b"vfio-pci", b"nvme")
    assert [w.value for w in host.writes] == ["vfio-pci", "nvme"]
    assert sysfs.read(override) == "nvme\n"


def test_the_file_offset_does_not_matter(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    fd = os.open(override, os.O_WRONLY | os.O_TRUNC)
    try:
        os.lseek(fd, 100, os.SEEK_SET)
        os.write(fd, b"pci-stub")
    finally:
        os.close(fd)
    assert [w.value for w in host.writes] == ["pci-stub"]
    assert sysfs.read(override) == "pci-stub\n"
    with open(override, "r+") as handle:
        handle.write("vfio-pci")
        handle.seek(0)  # stores what was written first, as Python's buffered writer does
        handle.write("nvme")
    assert [w.value for w in host.writes] == ["pci-stub", "vfio-pci", "nvme"]


def test_python_open_stores_once_per_flush(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    with open(override, "w") as handle:  # buffered: one write() at close
        handle.write("vfio")
        handle.write("-pci\n")
    assert [w.value for w in host.writes] == ["vfio-pci\n"]
    with open(override, "r+") as handle:  # no O_TRUNC either
        handle.write("x")
    assert sysfs.read(override) == "x\n"
    with open(override, "wb", buffering=0) as raw:
        raw.write(b"nvme")
        raw.write(b"\n")  # unbuffered: its own store, which clears
    assert [w.value for w in host.writes[-2:]] == ["nvme", "\n"]
    assert sysfs.read(override) == "(null)\n"


def test_a_refused_buffered_write_raises_at_close_once(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    with pytest.raises(OSError) as info, open(override, "w") as handle:
        handle.write("a" * 4095)
    assert info.value.errno == errno.EINVAL
    assert [w.errno for w in host.writes] == [errno.EINVAL]
    assert sysfs.read(override) == "(null)\n"
    sysfs.write(override, "vfio-pci")  # the fd was closed: the file is usable as before
    assert sysfs.read(override) == "vfio-pci\n"


# ----------------------------------------------------------------- O_TRUNC, zero bytes


def test_o_trunc_with_no_write_keeps_the_value(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    sysfs.write(override, "vfio-pci\n")
    os.close(os.open(override, os.O_WRONLY | os.O_TRUNC))
    assert sysfs.read(override) == "vfio-pci\n"
    with open(override, "w"):
        pass
    assert sysfs.read(override) == "vfio-pci\n"


def test_zero_byte_write_keeps_the_value(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    sysfs.write(override, "vfio-pci\n")
    assert sysfs.write(override, b"") == 0
    assert sysfs.read(override) == "vfio-pci\n"
    assert [w.value for w in host.writes] == ["vfio-pci\n"]  # the handler never saw it


def test_a_value_open_for_writing_still_reads_right(host: FakeKernel, sysfs: Sys) -> None:
    override = sysfs.dev(GPU, "driver_override")
    sysfs.write(override, "vfio-pci\n")
    fd = os.open(override, os.O_WRONLY | os.O_TRUNC)
    try:
        assert sysfs.read(override) == "vfio-pci\n"
        os.write(fd, b"nvme")
        assert sysfs.read(override) == "nvme\n"
    finally:
        os.close(fd)


# ----------------------------------------------------------------- kernfs checks at open


def _write_only_paths() -> list[str]:
    dev = f"{DEVICES}/{PF}"
    drv = "/sys/bus/pci/drivers/vfio-pci"
    return [f"{dev}/remove", f"{dev}/reset", f"{dev}/rescan", f"{drv}/bind", f"{drv}/unbind",
            f"{drv}/new_id", f"{drv}/remove_id", "/sys/bus/pci/drivers_probe",
            "/sys/bus/pci/rescan"]


@pytest.mark.parametrize("path", _write_only_paths())
def test_root_cannot_open_a_write_only_file_for_reading(
    host: FakeKernel, sysfs: Sys, path: str
) -> None:
    assert os.getuid() == 0
    assert _open_errno(path, os.O_RDONLY) == errno.EACCES
    assert _open_errno(path, os.O_RDWR) == errno.EACCES
    with pytest.raises(PermissionError):
        sysfs.read(path)
    assert host.writes == []


def test_vf_msix_count_is_write_only(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(PF, "sriov_drivers_autoprobe"), "0")
    sysfs.write(sysfs.dev(PF, "sriov_numvfs"), "1")
    vf = vf_addresses(1)[0]
    assert _open_errno(sysfs.dev(vf, "sriov_vf_msix_count"), os.O_RDONLY) == errno.EACCES


@pytest.mark.parametrize("mode", ["r+", "a", "w"])
def test_root_cannot_open_a_read_only_attribute_for_writing(
    host: FakeKernel, sysfs: Sys, mode: str
) -> None:
    path = sysfs.dev(PF, "vendor")
    with pytest.raises(PermissionError):
        open(path, mode).close()
    assert sysfs.read(path) == "0x8086\n"
    assert host.writes == []


def test_readable_attributes_still_open_both_ways(host: FakeKernel, sysfs: Sys) -> None:
    for path in (sysfs.dev(PF, "driver_override"), "/sys/bus/pci/drivers_autoprobe"):
        os.close(os.open(path, os.O_RDWR))
        os.close(os.open(path, os.O_RDONLY))
    assert host.writes == []


def test_open_does_not_change_the_file_mode(host: FakeKernel, sysfs: Sys) -> None:
    """pyfakefs's os.open chmods the file to its mode argument; a real open() does not."""
    cases = {sysfs.dev(PF, "vendor"): 0o444, sysfs.dev(PF, "driver_override"): 0o644,
             sysfs.dev(PF, "reset"): 0o200, "/sys/bus/pci/drivers/vfio-pci/bind": 0o200}
    for path, mode in cases.items():
        flags = os.O_WRONLY if mode & 0o200 else os.O_RDONLY
        os.close(os.open(path, flags, 0o777))
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, path


def test_non_root_is_refused_by_the_mode(host: FakeKernel, sysfs: Sys) -> None:
    os.close(os.open(sysfs.dev(NIC, "driver_override"), os.O_WRONLY))  # as root: fine
    set_uid(1000)
    try:
        assert _open_errno(sysfs.dev(NIC, "driver_override"), os.O_WRONLY) == errno.EACCES
        assert sysfs.read(sysfs.dev(NIC, "driver_override")) == "(null)\n"
    finally:
        reset_ids()


# ----------------------------------------------------------------- power_state


def test_power_state_unknown_until_something_sets_it(host: FakeKernel, sysfs: Sys) -> None:
    """A function starts at PCI_UNKNOWN (observed: an unbound host bridge, ICH9 functions)."""
    state = sysfs.dev(NOGROUP, "power_state")
    assert sysfs.read(state) == "unknown\n"  # no driver ever enabled it
    sysfs.write(sysfs.dev(NOGROUP, "enable"), "1")  # pci_enable_device: D0
    assert sysfs.read(state) == "D0\n"
    sysfs.write(sysfs.dev(NOGROUP, "enable"), "0")
    assert sysfs.read(state) == "D0\n"  # disabling does not forget the state
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D0\n"  # e1000e enabled it
    assert sysfs.read(sysfs.dev(NVME, "power_state")) == "D0\n"


def test_power_state_after_pci_stub_and_vfio(host: FakeKernel, sysfs: Sys) -> None:
    sysfs.write(sysfs.dev(NIC, "driver_override"), "pci-stub")
    sysfs.write(sysfs.drv("e1000e", "unbind"), NIC)
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D0\n"  # known from e1000e's probe
    sysfs.write(sysfs.drv("pci-stub", "bind"), NIC)
    assert sysfs.read(sysfs.dev(NIC, "power_state")) == "D0\n"
    override = sysfs.dev(NOGROUP, "driver_override")
    sysfs.write(override, "pci-stub")
    sysfs.write("/sys/bus/pci/drivers_probe", NOGROUP)
    assert sysfs.driver(NOGROUP) == "pci-stub"
    assert sysfs.read(sysfs.dev(NOGROUP, "power_state")) == "unknown\n"  # stub enables nothing
    sysfs.write(sysfs.dev(GPU, "driver_override"), "vfio-pci")
    sysfs.write(sysfs.drv("nouveau", "unbind"), GPU)
    sysfs.write(sysfs.drv("vfio-pci", "bind"), GPU)
    assert sysfs.read(sysfs.dev(GPU, "power_state")) == "D3hot\n"
    sysfs.write(sysfs.drv("vfio-pci", "unbind"), GPU)
    assert sysfs.read(sysfs.dev(GPU, "power_state")) == "D0\n"


def test_other_files_on_the_same_filesystem_keep_pyfakefs_behaviour(
    fs: FakeFilesystem, host: FakeKernel
) -> None:
    fs.create_file("/etc/notes", contents="old text")
    with open("/etc/notes", "r+") as handle:  # an ordinary file: overwritten in place
        handle.write("new")
    with open("/etc/notes") as handle:
        assert handle.read() == "new text"
