"""The inner real-kernel scenarios, replayed step by step on the fake kernel.

Each function mirrors one test of tests/realkernel/inner (same order of writes, same
record names) and records what the fake kernel did into a Recorder. The table
``REPLAYS`` maps the inner test id, as the observed JSON names it, to its replay.
Scenarios or steps the fake cannot play (real processes doing VFIO ioctls, module
parameters, the kernel log, timings) are not faked here: the differential tests list
them as not modelled, with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable

from .fakeio import (
    DEV_VFIO,
    DEVICES,
    GROUPS,
    HOST_BRIDGE,
    PCI,
    PF,
    ROOT_PORT,
    UNKNOWN,
    FakeGuest,
    Recorder,
    errname,
)

Replay = Callable[[FakeGuest, Recorder], None]
REPLAYS: dict[str, Replay] = {}
#: Replays that need a fake kernel built with options (FakeKernel keyword arguments).
KERNEL_OPTIONS: dict[str, dict[str, bool]] = {}

FAKE_IDS = "1234 5678"
VFIO = f"{PCI}/drivers/vfio-pci"
NVME = f"{PCI}/drivers/nvme"


def replay(test: str, **options: bool) -> Callable[[Replay], Replay]:
    """Register a replay for the inner test ``test`` (``file.py::function``)."""
    def register(fn: Replay) -> Replay:
        REPLAYS[test] = fn
        if options:
            KERNEL_OPTIONS[test] = options
        return fn
    return register


def _matches(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


# --------------------------------------------------------------------------- test_binding


@replay("test_binding.py::test_bind_unknown_address")
def bind_unknown_address(g: FakeGuest, o: Recorder) -> None:
    for drv in ("nvme", "vfio-pci"):
        o.check(f"{drv}/bind unknown", g.write(g.drv(drv, "bind"), UNKNOWN), "ENODEV", "")


@replay("test_binding.py::test_bind_bound_device")
def bind_bound_device(g: FakeGuest, o: Recorder) -> None:
    o.check("nvme/bind of the nvme-bound PF", g.write(g.drv("nvme", "bind"), PF), "", "")
    o.check("nvme/bind with a trailing newline", g.write(g.drv("nvme", "bind"), PF + "\n"),
            "", "")
    o.check("vfio-pci/bind of the nvme-bound PF (no override: no match)",
            g.write(g.drv("vfio-pci", "bind"), PF), "", "")
    o.check("PF still on nvme", g.driver_of(PF), "", "")


@replay("test_binding.py::test_unbind_errors")
def unbind_errors(g: FakeGuest, o: Recorder) -> None:
    o.check("vfio-pci/unbind of the nvme-bound PF", g.write(g.drv("vfio-pci", "unbind"), PF),
            "", "")
    o.check("nvme/unbind unknown", g.write(g.drv("nvme", "unbind"), UNKNOWN), "", "")
    o.check("PF still on nvme", g.driver_of(PF), "", "")


@replay("test_binding.py::test_unbind_and_bind_pf")
def unbind_and_bind_pf(g: FakeGuest, o: Recorder) -> None:
    o.check("nvme/unbind PF", g.write(g.drv("nvme", "unbind"), PF), "", "")
    o.check("driver link after unbind", g.readlink(g.dev(PF, "driver")), "", "")
    o.check("drivers/nvme/<PF> after unbind", g.readlink(f"{NVME}/{PF}"), "", "")
    o.check("nvme/unbind again", g.write(g.drv("nvme", "unbind"), PF), "", "")
    o.check("sriov_numvfs 1 with no PF driver", g.write(g.dev(PF, "sriov_numvfs"), "1"), "", "")
    o.check("sriov_numvfs 0 with no PF driver (N == current)",
            g.write(g.dev(PF, "sriov_numvfs"), "0"), "", "")
    o.check("drivers_probe of the unbound PF", g.write(f"{PCI}/drivers_probe", PF), "", "")
    o.check("drivers_probe rebinds nvme", g.driver_of(PF), "", "")


@replay("test_binding.py::test_drivers_probe")
def drivers_probe(g: FakeGuest, o: Recorder) -> None:
    probe = f"{PCI}/drivers_probe"
    o.check("drivers_probe unknown", g.write(probe, UNKNOWN), "", "")
    o.check("drivers_probe of a bound device", g.write(probe, PF), "", "")
    o.check("still nvme", g.driver_of(PF), "", "")
    o.check("drivers_probe of an unbound device no driver wants", g.write(probe, "0000:00:1f.3"),
            "", "")
    o.check("drivers_probe with upper-case hex", g.write(probe, "0000:00:1F.3"), "", "")
    o.check("drivers_probe with a trailing newline", g.write(probe, "0000:00:1f.3\n"), "", "")


@replay("test_binding.py::test_driver_override_rules")
def driver_override_rules(g: FakeGuest, o: Recorder) -> None:
    path = g.dev(PF, "driver_override")
    o.check("set vfio-pci\\n", g.write(path, "vfio-pci\n"), "", "")
    o.check("reads vfio-pci\\n", g.read(path), "", "")
    o.check("no rebind on set", g.driver_of(PF), "", "")
    o.check("zero-byte write returns", g.write(path, b""), "", "")
    o.check("zero-byte write changes nothing", g.read(path), "", "")
    o.check("set 'a\\nb'", g.write(path, "a\nb"), "", "")
    o.check("'a\\nb' keeps the text before the newline", g.read(path), "", "")
    o.check("set a name no driver has", g.write(path, "none"), "", "")
    o.check("clear with \\n", g.write(path, "\n"), "", "")
    o.check("reads (null) after clear", g.read(path), "", "")
    g.must(path, "x")
    o.check("clear with \\0", g.write(path, b"\0"), "", "")
    o.check("reads (null) after \\0", g.read(path), "", "")
    o.check("4095 bytes", g.write(path, "x" * 4095), "", "")
    o.check("4094 bytes", g.write(path, "x" * 4094), "", "")
    o.check("4094 bytes read back", len(g.read(path)), "", "")
    g.must(path, "\n")


@replay("test_binding.py::test_new_id_and_remove_id")
def new_id_and_remove_id(g: FakeGuest, o: Recorder) -> None:
    o.check("new_id one field", g.write(f"{VFIO}/new_id", "1234"), "", "")
    o.check("new_id ok", g.write(f"{VFIO}/new_id", FAKE_IDS), "", "")
    o.check("new_id duplicate", g.write(f"{VFIO}/new_id", FAKE_IDS), "", "")
    o.check("new_id driver_data not in the id table",
            g.write(f"{VFIO}/new_id", "1234 5679 ffffffff ffffffff 0 0 1"), "", "")
    o.check("remove_id one field", g.write(f"{VFIO}/remove_id", "1234"), "", "")
    o.check("remove_id ok", g.write(f"{VFIO}/remove_id", FAKE_IDS), "", "")
    o.check("remove_id again", g.write(f"{VFIO}/remove_id", FAKE_IDS), "", "")
    o.check("new_id of ids the PF has does not touch a bound device",
            g.write(f"{VFIO}/new_id", "1b36 0010"), "", "")
    o.check("PF still nvme after new_id", g.driver_of(PF), "", "")
    o.check("remove_id 1b36 0010", g.write(f"{VFIO}/remove_id", "1b36 0010"), "", "")


@replay("test_binding.py::test_override_names_another_driver")
def override_names_another_driver(g: FakeGuest, o: Recorder) -> None:
    g.must(g.dev(PF, "driver_override"), "vfio-pci")
    g.must(g.drv("nvme", "unbind"), PF)
    o.check("nvme/bind with override vfio-pci", g.write(g.drv("nvme", "bind"), PF), "", "")
    o.check("vfio-pci/bind with override", g.write(g.drv("vfio-pci", "bind"), PF), "", "")
    o.check("PF driver", g.driver_of(PF), "", "")
    group = g.group_of(PF)
    o.check("/dev/vfio/<group> of the PF", g.exists(f"{DEV_VFIO}/{group}"), "", "")
    o.record("power_state of the idle vfio-pci PF", g.read(g.dev(PF, "power_state")))
    o.check("sriov_numvfs 1 under vfio-pci (enable_sriov off)",
            g.write(g.dev(PF, "sriov_numvfs"), "1"), "", "")
    o.check("enable 1 while bound to vfio-pci", g.write(g.dev(PF, "enable"), "1"), "", "")
    g.must(g.drv("vfio-pci", "unbind"), PF)
    o.check("/dev/vfio/<group> after unbind", g.exists(f"{DEV_VFIO}/{group}"), "", "")
    g.must(g.dev(PF, "driver_override"), "\n")
    o.check("drivers_probe after clearing", g.write(f"{PCI}/drivers_probe", PF), "", "")
    o.check("PF back on nvme", g.driver_of(PF), "", "")


# --------------------------------------------------------------------------- test_reads


@replay("test_reads.py::test_pf_identity_and_formats")
def pf_identity_and_formats(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    o.check("pf vendor", g.read(f"{d}/vendor"), "", "")
    o.check("pf device", g.read(f"{d}/device"), "", "")
    o.check("pf class", g.read(f"{d}/class"), "", "")
    for attr, pattern in (
        ("vendor", r"0x[0-9a-f]{4}\n"),
        ("device", r"0x[0-9a-f]{4}\n"),
        ("subsystem_vendor", r"0x[0-9a-f]{4}\n"),
        ("subsystem_device", r"0x[0-9a-f]{4}\n"),
        ("class", r"0x[0-9a-f]{6}\n"),
        ("revision", r"0x[0-9a-f]{2}\n"),
        ("numa_node", r"-?\d+\n"),
        ("enable", r"\d+\n"),
        ("modalias",
         r"pci:v[0-9A-F]{8}d[0-9A-F]{8}sv[0-9A-F]{8}sd[0-9A-F]{8}bc[0-9A-F]{2}"
         r"sc[0-9A-F]{2}i[0-9A-F]{2}\n"),
    ):
        value = g.read(f"{d}/{attr}")
        o.check(f"format of {attr} ({value!r})", _matches(pattern, value), True, "")
    o.check("numa_node when unknown", g.read(f"{d}/numa_node"), "", "")
    o.record("power_state of the nvme-bound PF", g.read(f"{d}/power_state"))
    o.record("pf revision", g.read(f"{d}/revision"))
    o.record("pf modalias", g.read(f"{d}/modalias"))


@replay("test_reads.py::test_sriov_attribute_formats")
def sriov_attribute_formats(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    o.check("sriov_totalvfs", g.read(f"{d}/sriov_totalvfs"), "", "")
    o.check("sriov_numvfs at boot", g.read(f"{d}/sriov_numvfs"), "", "")
    o.check("sriov_drivers_autoprobe at boot", g.read(f"{d}/sriov_drivers_autoprobe"), "", "")
    for attr in ("sriov_offset", "sriov_stride"):
        value = g.read(f"{d}/{attr}")
        o.check(f"{attr} is %u ({value!r})", _matches(r"\d+\n", value), True, "")
        o.record(attr, value)
    vf_device = g.read(f"{d}/sriov_vf_device")
    o.check(f"sriov_vf_device is %x without 0x ({vf_device!r})",
            _matches(r"[0-9a-f]+\n", vf_device) and not vf_device.startswith("0"), True, "")
    o.record("sriov_vf_device", vf_device)
    o.record("sriov_vf_total_msix", g.read(f"{d}/sriov_vf_total_msix"))


@replay("test_reads.py::test_driver_override_reads_null_at_boot")
def driver_override_reads_null_at_boot(g: FakeGuest, o: Recorder) -> None:
    for addr in (PF, ROOT_PORT, HOST_BRIDGE):
        o.check(f"driver_override of {addr}", g.read(g.dev(addr, "driver_override")), "", "")


@replay("test_reads.py::test_links_are_relative")
def links_are_relative(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    bus_link = g.readlink(d)
    o.record("devices/PF link", bus_link)
    o.check("devices/PF link is relative into devices/", bool(
        bus_link and bus_link.startswith("../../../devices/pci0000:00/")
        and bus_link.endswith(f"/{PF}")), True, "")
    real = os.path.realpath(d)
    o.check("PF sits below its root port", os.path.basename(os.path.dirname(real)), "", "")
    o.check("driver link", g.readlink(f"{d}/driver"), "", "")
    o.check("driver dir has a link back", os.path.realpath(f"{NVME}/{PF}"), real, "")
    group = g.readlink(f"{d}/iommu_group")
    o.record("iommu_group link", group)
    o.check("iommu_group link form", bool(group and _matches(
        r"\.\./\.\./\.\./\.\./kernel/iommu_groups/\d+", group)), True, "")
    number = g.group_of(PF)
    o.check("group lists the PF", PF in os.listdir(f"{GROUPS}/{number}/devices"), True, "")
    o.check("subsystem link", g.readlink(f"{d}/subsystem"), "", "")
    o.check("driver link of a root-bus device (root port)",
            g.readlink(g.dev(ROOT_PORT, "driver")), "", "")


@replay("test_reads.py::test_reset_method_format")
def reset_method_format(g: FakeGuest, o: Recorder) -> None:
    value = g.read(g.dev(PF, "reset_method"))
    o.record("PF reset_method", value)
    names = value[:-1].split(" ") if value.endswith("\n") else []
    known = {"device_specific", "acpi", "flr", "af_flr", "pm", "bus", "cxl_bus", "cxl_reset",
             "d3cold"}
    o.check(f"reset_method format ({value!r})",
            bool(names) and all(n in known for n in names) and value.count("\n") == 1, True, "")


@replay("test_reads.py::test_write_only_and_read_only_as_root")
def write_only_and_read_only_as_root(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    for attr in ("vendor", "class", "sriov_totalvfs"):
        o.check(f"root writes {attr} (0444)", g.write_detail(f"{d}/{attr}", "1"), "", "")
    for path in (f"{d}/reset", f"{d}/remove", g.drv("nvme", "bind"), f"{VFIO}/new_id",
                 f"{PCI}/drivers_probe"):
        o.check(f"root reads {path} (write-only)", g.read_detail(path), "", "")


@replay("test_reads.py::test_hidden_attributes_do_not_exist")
def hidden_attributes_do_not_exist(g: FakeGuest, o: Recorder) -> None:
    port = g.dev(ROOT_PORT)
    o.check("sriov_numvfs on the root port", g.write(f"{port}/sriov_numvfs", "1"), "", "")
    o.check("sriov_totalvfs on the root port", g.read(f"{port}/sriov_totalvfs"), "", "")
    bridge = g.dev(HOST_BRIDGE)
    o.record("host bridge reset_method", g.read(f"{bridge}/reset_method"))
    o.check("reset on the host bridge (no method)", g.write(f"{bridge}/reset", "1"), "", "")
    o.check("sriov_vf_msix_count on the PF", g.read(g.dev(PF, "sriov_vf_msix_count")), "", "")


@replay("test_reads.py::test_bus_drivers_autoprobe")
def bus_drivers_autoprobe(g: FakeGuest, o: Recorder) -> None:
    path = f"{PCI}/drivers_autoprobe"
    o.check("drivers_autoprobe at boot", g.read(path), "", "")
    o.check("write '0x'", g.write(path, "0x"), "", "")
    o.check("after '0x'", g.read(path), "", "")
    o.check("write 'no'", g.write(path, "no"), "", "")
    o.check("after 'no'", g.read(path), "", "")
    g.must(path, "0")
    o.check("write 'yes'", g.write(path, "yes"), "", "")
    o.check("after 'yes'", g.read(path), "", "")


@replay("test_reads.py::test_enable_and_numa_node_writes")
def enable_and_numa_node_writes(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    o.check("enable 'x'", g.write(f"{d}/enable", "x"), "", "")
    o.check("enable 1 while bound", g.write(f"{d}/enable", "1"), "", "")
    o.check("numa_node 'abc'", g.write(f"{d}/numa_node", "abc"), "", "")
    o.check("numa_node 7 (offline)", g.write(f"{d}/numa_node", "7"), "", "")
    o.check("numa_node unchanged", g.read(f"{d}/numa_node"), "", "")


# --------------------------------------------------------------------------- test_remove_rescan


@replay("test_remove_rescan.py::test_remove_and_rescan_parsing")
def remove_and_rescan_parsing(g: FakeGuest, o: Recorder) -> None:
    for path in (g.dev(PF, "remove"), g.dev(PF, "rescan"), f"{PCI}/rescan"):
        o.check(f"{path} 'abc'", g.write(path, "abc"), "", "")
        o.check(f"{path} '0'", g.write(path, "0"), "", "")
    o.check("PF still there", g.exists(g.dev(PF)), "", "")
    o.check("PF still on nvme", g.driver_of(PF), "", "")


@replay("test_remove_rescan.py::test_remove_then_bus_rescan")
def remove_then_bus_rescan(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    group = g.group_of(PF)
    g.must(f"{d}/driver_override", "nvme")
    o.check("remove 1", g.write(f"{d}/remove", "1"), "", "")
    o.check("PF directory gone", os.path.lexists(d), "", "")
    o.check("group entry gone", os.path.lexists(f"{GROUPS}/{group}/devices/{PF}"), "", "")
    o.check("bus rescan 1", g.write(f"{PCI}/rescan", "1"), "", "")
    o.check("PF back", g.exists(d), "", "")
    o.check("override NULL after rescan", g.read(f"{d}/driver_override"), "", "")
    o.check("probed normally (nvme)", g.driver_of(PF) == "nvme", "", "")
    o.record("group before/after", {"before": group, "after": g.group_of(PF)})
    o.check("sriov_drivers_autoprobe of the new object", g.read(f"{d}/sriov_drivers_autoprobe"),
            "", "")


# --------------------------------------------------------------------------- test_reset


@replay("test_reset.py::test_reset_values")
def reset_values(g: FakeGuest, o: Recorder) -> None:
    vf = g.enable_vfs(1, autoprobe=False)[0]
    path = g.dev(vf, "reset")
    for bad in ("0", "2", "abc"):
        o.check(f"reset {bad!r}", g.write(path, bad), "", "")
    o.check("reset 1 on an unbound VF", g.write(path, "1"), "", "")
    o.check("reset never binds", g.driver_of(vf), "", "")


@replay("test_reset.py::test_reset_method_clear_default_and_errors")
def reset_method_clear_default_and_errors(g: FakeGuest, o: Recorder) -> None:
    vf = g.enable_vfs(1, autoprobe=False)[0]
    d = g.dev(vf)
    original = g.read(f"{d}/reset_method")
    o.record("VF reset_method", original)
    o.check("clear with \\n", g.write(f"{d}/reset_method", "\n"), "", "")
    o.check("reads empty after clear", g.read(f"{d}/reset_method"), "", "")
    o.check("reset file still there", g.exists(f"{d}/reset"), "", "")
    o.check("reset with no method", g.write(f"{d}/reset", "1"), "", "")
    o.check("default", g.write(f"{d}/reset_method", "default"), "", "")
    o.check("reads the probed list again", g.read(f"{d}/reset_method"), "", "")
    o.check("unknown name", g.write(f"{d}/reset_method", "bogus"), "", "")
    o.check("unsupported method (acpi)", g.write(f"{d}/reset_method", "acpi"), "", "")
    o.check("too many names", g.write(f"{d}/reset_method", " ".join(["flr"] * 8)), "", "")
    o.check("list unchanged after errors", g.read(f"{d}/reset_method"), "", "")
    first = original.split()[0] if original.split() else "flr"
    o.check(f"set {first!r}", g.write(f"{d}/reset_method", first), "", "")
    o.check(f"reads {first!r}", g.read(f"{d}/reset_method"), "", "")


@replay("test_reset.py::test_pf_reset_method_subset")
def pf_reset_method_subset(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    original = g.read(f"{d}/reset_method")
    names = original.split()
    last = names[-1]
    o.check(f"set {last!r}", g.write(f"{d}/reset_method", last), "", "")
    o.check(f"reads {last!r}", g.read(f"{d}/reset_method"), "", "")
    order = " ".join(reversed(names))
    o.check(f"set reversed {order!r}", g.write(f"{d}/reset_method", order), "", "")
    o.record("after a reversed list", g.read(f"{d}/reset_method"))
    g.must(f"{d}/reset_method", "default")
    o.check("default restores", g.read(f"{d}/reset_method"), "", "")


# --------------------------------------------------------------------------- test_sriov


@replay("test_sriov.py::test_numvfs_refused_values")
def numvfs_refused_values(g: FakeGuest, o: Recorder) -> None:
    path = g.dev(PF, "sriov_numvfs")
    o.check("numvfs 5 > totalvfs 4", g.write(path, "5"), "", "")
    for bad in ("abc", "1x", " 1", "1\n\n", "-1", "65536"):
        o.check(f"numvfs {bad!r}", g.write(path, bad), "", "")
    o.check("numvfs 0 when 0", g.write(path, "0"), "", "")
    o.check("numvfs reads 0", g.read(path), "", "")


@replay("test_sriov.py::test_vf_creation_layout")
def vf_creation_layout(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    vfs = g.enable_vfs(2, autoprobe=False)
    o.record("VF addresses (offset/stride)", vfs)
    o.check("numvfs reads 2", g.read(f"{d}/sriov_numvfs"), "", "")
    listed = sorted(n for n in os.listdir(DEVICES) if n.startswith("0000:01:"))
    o.check("devices on bus 01", listed, "", "")
    pf_group = g.group_of(PF)
    groups = []
    for i, vf in enumerate(vfs):
        v = g.dev(vf)
        o.check(f"virtfn{i}", g.readlink(f"{d}/virtfn{i}"), "", "")
        o.check(f"{vf} physfn", g.readlink(f"{v}/physfn"), "", "")
        o.check(f"{vf} is a sibling of the PF", os.path.dirname(os.path.realpath(v)), "", "")
        o.check(f"{vf} vendor", g.read(f"{v}/vendor"), "", "")
        o.check(f"{vf} device", g.read(f"{v}/device"), "", "")
        o.record(f"{vf} class", g.read(f"{v}/class"))
        o.record(f"{vf} reset_method", g.read(f"{v}/reset_method"))
        o.record(f"{vf} power_state", g.read(f"{v}/power_state"))
        o.check(f"{vf} driver_override", g.read(f"{v}/driver_override"), "", "")
        o.check(f"{vf} unbound with autoprobe 0", g.driver_of(vf), "", "")
        group = g.group_of(vf)
        groups.append(group)
        o.check(f"{vf} has an IOMMU group", group is not None, "", "")
        o.check(f"{vf} group holds only the VF", g.listdir(f"{GROUPS}/{group}/devices"), "", "")
        for hidden in ("remove", "rescan", "sriov_numvfs", "sriov_totalvfs"):
            o.check(f"{vf}/{hidden} absent", g.exists(f"{v}/{hidden}"), "", "")
        o.check(f"{vf}/sriov_vf_msix_count present", g.exists(f"{v}/sriov_vf_msix_count"), "",
                "")
        o.check(f"{vf}/remove write", g.write(f"{v}/remove", "1"), "", "")
    o.record("PF and VF groups", {"pf": pf_group, "vfs": groups})
    o.check("each VF has a new group", len({pf_group, *groups}), "", "")


@replay("test_sriov.py::test_numvfs_change_needs_zero_first")
def numvfs_change_needs_zero_first(g: FakeGuest, o: Recorder) -> None:
    path = g.dev(PF, "sriov_numvfs")
    vfs = g.enable_vfs(2, autoprobe=False)
    o.check("numvfs 3 while 2", g.write(path, "3"), "", "")
    o.check("numvfs 1 while 2", g.write(path, "1"), "", "")
    o.check("numvfs 5 while 2", g.write(path, "5"), "", "")
    o.check("numvfs 2 while 2", g.write(path, "2"), "", "")
    o.check("VFs untouched", all(g.exists(g.dev(v)) for v in vfs), "", "")


@replay("test_sriov.py::test_numvfs_number_parsing")
def numvfs_number_parsing(g: FakeGuest, o: Recorder) -> None:
    path = g.dev(PF, "sriov_numvfs")
    for text in ("0x1", "01", "2\n"):
        o.check(f"numvfs {text!r}", g.write(path, text), "", "")
        o.check(f"numvfs after {text!r}", g.read(path), "", "")
        g.must(path, "0")


@replay("test_sriov.py::test_write_through_stale_fd")
def write_through_stale_fd(g: FakeGuest, o: Recorder) -> None:
    vf = g.enable_vfs(1, autoprobe=False)[0]
    fd = g.open_w(g.dev(vf, "driver_override"))
    try:
        g.must(g.dev(PF, "sriov_numvfs"), "0")
        try:
            os.write(fd, b"vfio-pci")
            result = "ok"
        except OSError as exc:
            result = errname(exc.errno)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    o.check("write through the fd of a removed VF", result, "", "")


@replay("test_sriov.py::test_numvfs_zero_removes_vfs")
def numvfs_zero_removes_vfs(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    vfs = g.enable_vfs(3, autoprobe=False)
    groups = [g.group_of(v) for v in vfs]
    result, _ = g.timed_write(f"{d}/sriov_numvfs", "0")
    o.check("numvfs 0", result, "", "")
    for i, vf in enumerate(vfs):
        o.check(f"{vf} directory gone", os.path.lexists(f"{DEVICES}/{vf}"), "", "")
        o.check(f"virtfn{i} gone", os.path.lexists(f"{d}/virtfn{i}"), "", "")
        o.check(f"group {groups[i]} of {vf} gone", g.exists(f"{GROUPS}/{groups[i]}"), "", "")
    o.check("numvfs reads 0", g.read(f"{d}/sriov_numvfs"), "", "")


@replay("test_sriov.py::test_vf_autoprobe_on")
def vf_autoprobe_on(g: FakeGuest, o: Recorder) -> None:
    vfs = g.enable_vfs(2, autoprobe=True)
    right_after = {vf: g.driver_of(vf) for vf in vfs}
    o.record("VF drivers right after the write", right_after)
    for vf in vfs:
        o.check(f"{vf} probed by nvme at creation", right_after[vf] == "nvme", "", "")
    g.nvme_gives_up(vfs)
    o.record("VF drivers after settling", {vf: g.driver_of(vf) for vf in vfs})


@replay("test_sriov.py::test_bus_autoprobe_off_still_probes_vfs")
def bus_autoprobe_off_still_probes_vfs(g: FakeGuest, o: Recorder) -> None:
    g.must(f"{PCI}/drivers_autoprobe", "0")
    vfs = g.enable_vfs(1, autoprobe=True)
    o.check("VF probed by nvme with bus autoprobe 0", g.driver_of(vfs[0]) == "nvme", "", "")
    g.must(f"{PCI}/drivers_autoprobe", "1")


@replay("test_sriov.py::test_vf_autoprobe_off")
def vf_autoprobe_off(g: FakeGuest, o: Recorder) -> None:
    vfs = g.enable_vfs(2, autoprobe=False)
    vf = vfs[0]
    o.check("VFs unbound", [g.driver_of(v) for v in vfs], "", "")
    o.check("nvme/bind of a VF with autoprobe 0", g.write(g.drv("nvme", "bind"), vf), "", "")
    o.check("drivers_probe of a VF with autoprobe 0", g.write(f"{PCI}/drivers_probe", vf), "", "")
    o.check("still unbound after drivers_probe", g.driver_of(vf), "", "")
    o.check("vfio-pci new_id of the VF ids", g.write(f"{VFIO}/new_id", "1b36 0010"), "", "")
    o.check("new_id does not bind a VF with autoprobe 0", [g.driver_of(v) for v in vfs], "", "")
    g.write(f"{VFIO}/remove_id", "1b36 0010")
    g.must(g.dev(vf, "driver_override"), "vfio-pci")
    o.check("drivers_probe with override bypasses autoprobe 0",
            g.write(f"{PCI}/drivers_probe", vf), "", "")
    o.check("VF bound to vfio-pci", g.driver_of(vf), "", "")
    g.must(f"{VFIO}/unbind", vf)


@replay("test_sriov.py::test_new_id_probes_unbound_vfs")
def new_id_probes_unbound_vfs(g: FakeGuest, o: Recorder) -> None:
    vfs = g.enable_vfs(2, autoprobe=True)
    o.record("VFs left unbound by nvme", g.nvme_gives_up(vfs))
    o.check("new_id 1b36 0010", g.write(f"{VFIO}/new_id", "1b36 0010"), "", "")
    o.check("VFs bound to vfio-pci at once", [g.driver_of(v) for v in vfs], "", "")
    o.check("PF left on nvme", g.driver_of(PF), "", "")
    o.check("remove_id", g.write(f"{VFIO}/remove_id", "1b36 0010"), "", "")
    o.check("VFs stay bound after remove_id", [g.driver_of(v) for v in vfs], "", "")


@replay("test_sriov.py::test_vf_groups_across_reenable")
def vf_groups_across_reenable(g: FakeGuest, o: Recorder) -> None:
    vfs = g.enable_vfs(2, autoprobe=False)
    first = [g.group_of(v) for v in vfs]
    g.must(g.dev(vfs[0], "driver_override"), "nvme")
    g.must(g.dev(PF, "sriov_numvfs"), "0")
    vfs = g.enable_vfs(2, autoprobe=False)
    second = [g.group_of(v) for v in vfs]
    o.record("VF groups, first and second enable", {"first": first, "second": second})
    o.check("recreated VF has a NULL override", g.read(g.dev(vfs[0], "driver_override")), "", "")


@replay("test_sriov.py::test_sriov_drivers_autoprobe_values")
def sriov_drivers_autoprobe_values(g: FakeGuest, o: Recorder) -> None:
    path = g.dev(PF, "sriov_drivers_autoprobe")
    for value in ("0", "1", "n", "Y", "off", "on"):
        o.check(f"autoprobe {value!r}", g.write(path, value), "", "")
        o.check(f"autoprobe after {value!r}", g.read(path), "", "")
    for bad in ("maybe", "2", "x"):
        o.check(f"autoprobe {bad!r}", g.write(path, bad), "", "")


@replay("test_sriov.py::test_vfio_bind_of_pf_with_vfs")
def vfio_bind_of_pf_with_vfs(g: FakeGuest, o: Recorder) -> None:
    d = g.dev(PF)
    vfs = g.enable_vfs(1, autoprobe=False)
    g.must(g.drv("nvme", "unbind"), PF)
    o.record("numvfs after the PF driver was unbound", g.read(f"{d}/sriov_numvfs"))
    o.record("VF still present", g.exists(g.dev(vfs[0])))
    if g.read(f"{d}/sriov_numvfs") == "0\n":
        return  # the inner test skips here: its last two records are not produced
    g.must(f"{d}/driver_override", "vfio-pci")
    o.check("vfio-pci/bind of a PF with VFs", g.write(g.drv("vfio-pci", "bind"), PF), "", "")
    o.check("PF unbound", g.driver_of(PF), "", "")


# --------------------------------------------------------------------------- test_vfio


def _vfio_vf(g: FakeGuest, count: int = 1) -> list[str]:
    vfs = g.enable_vfs(count, autoprobe=False)
    g.must(g.dev(vfs[0], "driver_override"), "vfio-pci")
    g.must(f"{PCI}/drivers_probe", vfs[0])
    return vfs


def _vfio_dev(g: FakeGuest, addr: str) -> list[str]:
    path = g.dev(addr, "vfio-dev")
    return g.listdir(path) if os.path.isdir(path) else []


@replay("test_vfio.py::test_vfio_bind_and_unbind_nodes")
def vfio_bind_and_unbind_nodes(g: FakeGuest, o: Recorder) -> None:
    vf = g.enable_vfs(1, autoprobe=False)[0]
    group = g.group_of(vf)
    node = f"{DEV_VFIO}/{group}"
    o.check("/dev/vfio/vfio exists", g.exists(f"{DEV_VFIO}/vfio"), "", "")
    o.check("no group node before bind", g.exists(node), "", "")
    o.check("vfio-pci/bind without override", g.write(f"{VFIO}/bind", vf), "", "")
    g.must(g.dev(vf, "driver_override"), "vfio-pci")
    o.check("vfio-pci/bind with override", g.write(f"{VFIO}/bind", vf), "", "")
    o.check("driver link", g.readlink(g.dev(vf, "driver")), "", "")
    o.check("drivers/vfio-pci/<vf> link", os.path.realpath(f"{VFIO}/{vf}"), "", "")
    o.check(f"/dev/vfio/{group} after bind", g.exists(node), "", "")
    names = _vfio_dev(g, vf)
    o.record("vfio-dev entries while bound", names)
    o.check("vfio-dev/vfioX while bound", len(names) == 1 and _matches(r"vfio\d+", names[0]),
            "", "")
    cdev = [n for n in names if g.exists(f"{DEV_VFIO}/devices/{n}")]
    o.record("/dev/vfio/devices/vfioX present (CONFIG_VFIO_DEVICE_CDEV)", bool(cdev))
    if names:
        o.check("/sys/class/vfio-dev/vfioX", g.exists(f"/sys/class/vfio-dev/{names[0]}"), "", "")
    o.record("power_state of the idle vfio-pci VF", g.read(g.dev(vf, "power_state")))
    o.check("vfio-pci/bind again", g.write(f"{VFIO}/bind", vf), "", "")
    o.check("nvme/bind while on vfio-pci (override vfio-pci)", g.write(g.drv("nvme", "bind"), vf),
            "", "")
    result, _ = g.timed_write(f"{VFIO}/unbind", vf)
    o.check("vfio-pci/unbind", result, "", "")
    o.check(f"/dev/vfio/{group} after unbind", g.exists(node), "", "")
    o.check("vfio-dev after unbind", _vfio_dev(g, vf), "", "")
    o.check("driver link after unbind", g.readlink(g.dev(vf, "driver")), "", "")
    o.check("override survives unbind", g.read(g.dev(vf, "driver_override")), "", "")


@replay("test_vfio.py::test_vfio_user_holding_a_vf")
def vfio_user_holding_a_vf(g: FakeGuest, o: Recorder) -> None:
    """The real holder is a process doing VFIO ioctls; here it is the fake's hold_vfio
    (container, group and device fd in /proc/PID/fd). Records about the ioctls
    themselves are not modelled (see the differential tests)."""
    vf = _vfio_vf(g)[0]
    group = str(g.group_of(vf))
    o.check("VF on vfio-pci", g.driver_of(vf), "", "")
    holder = g.kernel.hold_vfio(vf, comm="python")
    try:
        o.check("holder got a device fd", None, "", "")  # hold_vfio raises otherwise
        o.check("group viable (only vfio-pci in it)", True, "", "")  # hold_vfio checks it
        fd_dir = f"/proc/{holder.pid}/fd"
        links = {int(fd): os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)}
        held = {links.get(fd) for fd in holder.fds}
        o.check("fd targets of container, group, device", sorted(t or "" for t in held), "", "")
        fdinfo = g.read(f"/proc/{holder.pid}/fdinfo/{holder.device_fd}")
        o.record("device fd fdinfo keys", [ln.split(":", 1)[0] for ln in fdinfo.splitlines()])
        syspath = [ln for ln in fdinfo.splitlines() if ln.startswith("vfio-device-syspath:")]
        o.check("fdinfo has vfio-device-syspath", bool(syspath), "", "")
    finally:
        holder.release()
    result = g.write(f"{VFIO}/unbind", vf)
    o.check("unbind after the holder closed", result, "", "")
    o.check(f"/dev/vfio/{group} gone", g.exists(f"{DEV_VFIO}/{group}"), "", "")


@replay("test_vfio.py::test_numvfs_zero_unbinds_vfio_vf")
def numvfs_zero_unbinds_vfio_vf(g: FakeGuest, o: Recorder) -> None:
    vfs = _vfio_vf(g, 2)
    group = str(g.group_of(vfs[0]))
    o.check("group node while bound", g.exists(f"{DEV_VFIO}/{group}"), "", "")
    o.check("numvfs 0", g.write(g.dev(PF, "sriov_numvfs"), "0"), "", "")
    o.check("group node after numvfs 0", g.exists(f"{DEV_VFIO}/{group}"), "", "")
    o.check("VF gone", g.exists(g.dev(vfs[0])), "", "")


@replay("test_vfio.py::test_vfio_pf_with_enable_sriov", vfio_enable_sriov=True)
def vfio_pf_with_enable_sriov(g: FakeGuest, o: Recorder) -> None:
    """enable_sriov is a FakeKernel option here (fixed when the fake is built), not a
    module parameter file, so the write of Y is not replayed."""
    d = g.dev(PF)
    g.must(f"{d}/driver_override", "vfio-pci")
    g.must(g.drv("nvme", "unbind"), PF)
    g.must(f"{PCI}/drivers_probe", PF)
    o.check("PF on vfio-pci", g.driver_of(PF), "", "")
    o.check("numvfs 2 under vfio-pci with enable_sriov", g.write(f"{d}/sriov_numvfs", "2"), "",
            "")
    vfs = g.vf_addresses(PF, 2)
    for vf in vfs:
        o.check(f"{vf} override set by vfio's notifier", g.read(g.dev(vf, "driver_override")),
                "", "")
        o.check(f"{vf} bound to vfio-pci", g.driver_of(vf), "", "")
    result, _ = g.timed_write(f"{VFIO}/unbind", PF)
    o.check("unbind the vfio-pci PF", result, "", "")
    o.check("VFs disabled by the PF unbind", [g.exists(g.dev(v)) for v in vfs], "", "")
    o.check("numvfs after the PF unbind", g.read(f"{d}/sriov_numvfs"), "", "")


# --------------------------------------------------------------------------- test_vfio_counts


def _counts(g: FakeGuest, addr: str) -> dict[str, str]:
    return {name: g.read(g.dev(addr, name)).strip()
            for name in ("enable", "power/runtime_usage", "power/runtime_status")}


def _vfio_lines(pid: int) -> list[str]:
    out = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps.read().splitlines():
            fields = line.split(None, 5)
            if len(fields) == 6 and "vfio" in fields[5]:
                out.append(f"{fields[1]} {fields[5].strip()}")
    return out


@replay("test_vfio_counts.py::test_vfio_user_counts")
def vfio_user_counts(g: FakeGuest, o: Recorder) -> None:
    """The holders are the fake's hold_vfio (via group, then via mmap)."""
    o.record("nvme-bound PF counts", {k: v for k, v in _counts(g, PF).items()
                                      if k != "power/runtime_status"})
    vf = _vfio_vf(g)[0]
    o.check("idle on vfio-pci", _counts(g, vf), "", "")
    holder = g.kernel.hold_vfio(vf, comm="python")
    o.check("device fd holder set up", None, "", "")  # hold_vfio raises otherwise
    o.check("held through the device fd", _counts(g, vf), "", "")
    holder.release()
    o.check("after the fd holder closed", _counts(g, vf), "", "")
    holder = g.kernel.hold_vfio(vf, comm="python", via="mmap")
    o.check("mapping holder set up", None, "", "")
    fd_dir = f"/proc/{holder.pid}/fd"
    o.check("VFIO fds left after the mapping",
            [fd for fd in os.listdir(fd_dir) if "vfio" in os.readlink(f"{fd_dir}/{fd}")], "", "")
    o.check("VFIO lines in /proc/PID/maps", _vfio_lines(holder.pid), "", "")
    o.check("held through a mapping only", _counts(g, vf), "", "")
    holder.release()
    o.check("after the mapping went", _counts(g, vf), "", "")
    o.check("unbind after release", g.write(f"{VFIO}/unbind", vf), "", "")
