"""SR-IOV: sriov_numvfs errors, VF creation and removal, autoprobe.

docs/kernel-model.md §3 and 7.1.
"""

from __future__ import annotations

import os
import time

import pytest

from . import guest
from .guest import DEVICES, DRIVERS, GROUPS, PCI, dev
from .observing import Observer

pytestmark = pytest.mark.realkernel


def test_numvfs_refused_values(pf: str, observe: Observer) -> None:
    """Above total → ERANGE; not a u16 or junk → EINVAL; N == current → success."""
    path = dev(pf) / "sriov_numvfs"
    observe.check("numvfs 5 > totalvfs 4", guest.write(path, "5"), "ERANGE", "3.1 step 2")
    for bad in ("abc", "1x", " 1", "1\n\n", "-1", "65536"):
        observe.check(f"numvfs {bad!r}", guest.write(path, bad), "EINVAL", "3.1 step 1")
    observe.check("numvfs 0 when 0", guest.write(path, "0"), "ok", "3.1 step 3")
    observe.check("numvfs reads 0", guest.read(path), "0\n", "3.1")


def test_vf_creation_layout(pf: str, observe: Observer) -> None:
    """VF addresses follow offset/stride; links, groups, ids and hidden files as claimed."""
    d = dev(pf)
    vfs = guest.enable_vfs(2, autoprobe=False)
    observe.record("VF addresses (offset/stride)", vfs)
    observe.check("numvfs reads 2", guest.read(d / "sriov_numvfs"), "2\n", "3.1")
    listed = sorted(n for n in os.listdir(DEVICES) if n.startswith("0000:01:"))
    observe.check("devices on bus 01", listed, sorted([pf, *vfs]), "3.2 addresses")
    pf_group = guest.group_of(pf)
    groups = []
    vf_device = int(guest.read(d / "sriov_vf_device"), 16)
    for i, vf in enumerate(vfs):
        v = dev(vf)
        observe.check(f"virtfn{i}", guest.readlink(d / f"virtfn{i}"), f"../{vf}", "1 virtfnN")
        observe.check(f"{vf} physfn", guest.readlink(v / "physfn"), f"../{pf}", "1 physfn")
        observe.check(f"{vf} is a sibling of the PF",
                      os.path.dirname(os.path.realpath(v)), os.path.dirname(os.path.realpath(d)),
                      "1 VFs are siblings")
        observe.check(f"{vf} vendor", guest.read(v / "vendor"), guest.read(d / "vendor"),
                      "1 VF vendor = PF vendor")
        observe.check(f"{vf} device", guest.read(v / "device"), f"0x{vf_device:04x}\n",
                      "1 VF device = sriov_vf_device")
        observe.record(f"{vf} class", guest.read(v / "class"))
        observe.record(f"{vf} reset_method", guest.read(v / "reset_method"))
        observe.record(f"{vf} power_state", guest.read(v / "power_state"))
        observe.check(f"{vf} driver_override", guest.read(v / "driver_override"), "(null)\n",
                      "1.1")
        observe.check(f"{vf} unbound with autoprobe 0", guest.driver_of(vf), None, "3.3")
        group = guest.group_of(vf)
        groups.append(group)
        observe.check(f"{vf} has an IOMMU group", group is not None, True, "3.2")
        observe.check(f"{vf} group holds only the VF",
                      sorted(os.listdir(GROUPS / str(group) / "devices")), [vf], "3.2 own group")
        for hidden in ("remove", "rescan", "sriov_numvfs", "sriov_totalvfs"):
            observe.check(f"{vf}/{hidden} absent", (v / hidden).exists(), False,
                          "1 hidden on VFs")
        observe.check(f"{vf}/sriov_vf_msix_count present", (v / "sriov_vf_msix_count").exists(),
                      True, "1 VFs only")
        observe.check(f"{vf}/remove write", guest.write(v / "remove", "1"), "ENOENT", "7.1")
    observe.record("PF and VF groups", {"pf": pf_group, "vfs": groups})
    observe.check("each VF has a new group", len({pf_group, *groups}), 1 + len(vfs), "3.2")


def test_numvfs_change_needs_zero_first(pf: str, observe: Observer) -> None:
    """With VFs enabled, another non-zero count is EBUSY; the same count is a no-op."""
    path = dev(pf) / "sriov_numvfs"
    vfs = guest.enable_vfs(2, autoprobe=False)
    observe.check("numvfs 3 while 2", guest.write(path, "3"), "EBUSY", "3.1 step 7")
    observe.check("numvfs 1 while 2", guest.write(path, "1"), "EBUSY", "3.1 step 7")
    observe.check("numvfs 5 while 2", guest.write(path, "5"), "ERANGE", "3.1 step 2 first")
    observe.check("numvfs 2 while 2", guest.write(path, "2"), "ok", "3.1 step 3")
    observe.check("VFs untouched", all(dev(v).exists() for v in vfs), True, "3.1 no-op")
    log = [line for line in guest.kmsg_lines() if "already enabled" in line]
    observe.record("kernel log on EBUSY", log[-1:] if log else None)


def test_numvfs_number_parsing(pf: str, observe: Observer) -> None:
    """Numbers are parsed with base 0 and one trailing newline: 0x1, 01 and 2\\n work."""
    path = dev(pf) / "sriov_numvfs"
    for text, count in (("0x1", "1\n"), ("01", "1\n"), ("2\n", "2\n")):
        observe.check(f"numvfs {text!r}", guest.write(path, text), "ok", "0 kstrtou16 base 0")
        observe.check(f"numvfs after {text!r}", guest.read(path), count, "0")
        guest.must(path, "0")


def test_write_through_stale_fd(pf: str, observe: Observer) -> None:
    """Writing through an fd whose VF has vanished gives ENODEV."""
    vf = guest.enable_vfs(1, autoprobe=False)[0]
    fd = os.open(dev(vf) / "driver_override", os.O_WRONLY)
    try:
        guest.must(dev(pf) / "sriov_numvfs", "0")
        try:
            os.write(fd, b"vfio-pci")
            result = "ok"
        except OSError as exc:
            result = guest.errname(exc.errno)
    finally:
        os.close(fd)
    observe.check("write through the fd of a removed VF", result, "ENODEV", "0 kernfs_get_active")


def test_numvfs_zero_removes_vfs(pf: str, observe: Observer) -> None:
    """numvfs 0: VF directories, bus links, virtfn links and the VFs' groups vanish."""
    d = dev(pf)
    vfs = guest.enable_vfs(3, autoprobe=False)
    groups = [guest.group_of(v) for v in vfs]
    result, seconds = guest.timed_write(d / "sriov_numvfs", "0")
    observe.check("numvfs 0", result, "ok", "3.4")
    observe.record("numvfs 0 took (s)", round(seconds, 2),
                   "docs/kernel-model.md §3.4: includes a 1 s sleep")
    observe.check("write 0 took at least 1 s", seconds >= 1.0, True, "3.4 1 s sleep")
    for i, vf in enumerate(vfs):
        observe.check(f"{vf} directory gone", os.path.lexists(DEVICES / vf), False, "3.4")
        observe.check(f"virtfn{i} gone", os.path.lexists(d / f"virtfn{i}"), False, "3.4")
        observe.check(f"group {groups[i]} of {vf} gone", (GROUPS / str(groups[i])).exists(),
                      False, "3.4 empty group disappears")
    observe.check("numvfs reads 0", guest.read(d / "sriov_numvfs"), "0\n", "3.4")


def test_vf_autoprobe_on(pf: str, observe: Observer) -> None:
    """With sriov_drivers_autoprobe 1 each new VF is probed by nvme at creation."""
    started = time.monotonic()
    vfs = guest.enable_vfs(2, autoprobe=True)
    right_after = {vf: guest.driver_of(vf) for vf in vfs}
    seen_probe = {vf: right_after[vf] == "nvme" or any(
        vf in line and "nvme" in line for line in guest.kmsg_lines()) for vf in vfs}
    observe.record("VF drivers right after the write", right_after)
    for vf in vfs:
        observe.check(f"{vf} probed by nvme at creation", seen_probe[vf], True, "3.2 / 7.1")
    settled = guest.wait_unbound(vfs, 20.0)
    observe.record("nvme gave up on the unprovisioned VFs (unbound) after (s)",
                   round(time.monotonic() - started, 2) if settled else None,
                   "QEMU VFs are not provisioned: nvme's probe fails asynchronously")
    observe.record("VF drivers after settling", {vf: guest.driver_of(vf) for vf in vfs})


def test_bus_autoprobe_off_still_probes_vfs(pf: str, observe: Observer) -> None:
    """Bus drivers_autoprobe 0 does not stop VF probing at creation (pci_bus_add_device)."""
    try:
        guest.must(PCI / "drivers_autoprobe", "0")
        vfs = guest.enable_vfs(1, autoprobe=True)
        probed = guest.driver_of(vfs[0]) == "nvme" or any(
            vfs[0] in line and "nvme" in line for line in guest.kmsg_lines())
        observe.check("VF probed by nvme with bus autoprobe 0", probed, True, "2.6")
    finally:
        guest.must(PCI / "drivers_autoprobe", "1")
    guest.wait_unbound(vfs, 20.0)


def test_vf_autoprobe_off(pf: str, observe: Observer) -> None:
    """With autoprobe 0 no VF is bound, not even by bind, drivers_probe or new_id."""
    vfs = guest.enable_vfs(2, autoprobe=False)
    time.sleep(0.5)
    vf = vfs[0]
    observe.check("VFs unbound", [guest.driver_of(v) for v in vfs], [None, None], "3.3")
    observe.check("nvme/bind of a VF with autoprobe 0", guest.write(DRIVERS / "nvme/bind", vf),
                  "ENODEV", "3.3 even bind")
    observe.check("drivers_probe of a VF with autoprobe 0",
                  guest.write(PCI / "drivers_probe", vf), "ok", "2.5 nothing matches: success")
    observe.check("still unbound after drivers_probe", guest.driver_of(vf), None, "3.3")
    vfio = DRIVERS / "vfio-pci"
    try:
        observe.check("vfio-pci new_id of the VF ids", guest.write(vfio / "new_id", "1b36 0010"),
                      "ok", "2.3")
        observe.check("new_id does not bind a VF with autoprobe 0",
                      [guest.driver_of(v) for v in vfs], [None, None], "3.3 new_id")
    finally:
        guest.write(vfio / "remove_id", "1b36 0010")
    guest.must(dev(vf) / "driver_override", "vfio-pci")
    observe.check("drivers_probe with override bypasses autoprobe 0",
                  guest.write(PCI / "drivers_probe", vf), "ok", "3.3")
    observe.check("VF bound to vfio-pci", guest.driver_of(vf), "vfio-pci", "3.3 override")
    guest.must(vfio / "unbind", vf)


def test_new_id_probes_unbound_vfs(pf: str, observe: Observer) -> None:
    """new_id with autoprobe 1 binds every unbound matching device at once (not the PF)."""
    vfs = guest.enable_vfs(2, autoprobe=True)
    observe.record("VFs left unbound by nvme", guest.wait_unbound(vfs, 20.0))
    vfio = DRIVERS / "vfio-pci"
    try:
        observe.check("new_id 1b36 0010", guest.write(vfio / "new_id", "1b36 0010"), "ok", "2.3")
        observe.check("VFs bound to vfio-pci at once", [guest.driver_of(v) for v in vfs],
                      ["vfio-pci", "vfio-pci"], "2.3 probe all unbound matching")
        observe.check("PF left on nvme", guest.driver_of(pf), "nvme", "2.3 bound left alone")
        observe.check("remove_id", guest.write(vfio / "remove_id", "1b36 0010"), "ok", "2.4")
        observe.check("VFs stay bound after remove_id", [guest.driver_of(v) for v in vfs],
                      ["vfio-pci", "vfio-pci"], "2.4")
    finally:
        guest.write(vfio / "remove_id", "1b36 0010")
    for vf in vfs:
        guest.write(vfio / "unbind", vf)


def test_vf_groups_across_reenable(pf: str, observe: Observer) -> None:
    """Recreated VFs are new objects; record their group numbers (not promised stable)."""
    d = dev(pf)
    vfs = guest.enable_vfs(2, autoprobe=False)
    first = [guest.group_of(v) for v in vfs]
    guest.must(dev(vfs[0]) / "driver_override", "nvme")
    guest.must(d / "sriov_numvfs", "0")
    vfs = guest.enable_vfs(2, autoprobe=False)
    second = [guest.group_of(v) for v in vfs]
    observe.record("VF groups, first and second enable", {"first": first, "second": second},
                   "docs/kernel-model.md §3.2: not stable across disable and re-enable")
    observe.check("recreated VF has a NULL override", guest.read(dev(vfs[0]) / "driver_override"),
                  "(null)\n", "3.4 new objects")


def test_sriov_drivers_autoprobe_values(pf: str, observe: Observer) -> None:
    """kstrtobool values are accepted and read back as %u; others are EINVAL."""
    path = dev(pf) / "sriov_drivers_autoprobe"
    for value, expect in (("0", "0\n"), ("1", "1\n"), ("n", "0\n"), ("Y", "1\n"),
                          ("off", "0\n"), ("on", "1\n")):
        observe.check(f"autoprobe {value!r}", guest.write(path, value), "ok", "3.3 kstrtobool")
        observe.check(f"autoprobe after {value!r}", guest.read(path), expect, "3.3 %u")
    for bad in ("maybe", "2", "x"):
        observe.check(f"autoprobe {bad!r}", guest.write(path, bad), "EINVAL", "3.3")


def test_vfio_bind_of_pf_with_vfs(pf: str, observe: Observer) -> None:
    """Unbinding nvme leaves SR-IOV on; vfio-pci then refuses the PF with EBUSY."""
    d = dev(pf)
    vfs = guest.enable_vfs(1, autoprobe=False)
    guest.must(DRIVERS / "nvme/unbind", pf)
    observe.record("numvfs after the PF driver was unbound", guest.read(d / "sriov_numvfs"),
                   "pci_iov_remove only warns: the VFs stay")
    observe.record("VF still present", dev(vfs[0]).exists())
    if guest.read(d / "sriov_numvfs") == "0\n":
        pytest.skip("nvme disabled SR-IOV at remove: cannot test vfio-pci bind of a PF with VFs")
    guest.must(d / "driver_override", "vfio-pci")
    observe.check("vfio-pci/bind of a PF with VFs", guest.write(DRIVERS / "vfio-pci/bind", pf),
                  "EBUSY", "2.1 step 6")
    observe.check("PF unbound", guest.driver_of(pf), None, "2.1")
