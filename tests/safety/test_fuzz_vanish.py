"""Fuzzing devices that vanish mid-operation: the device an operation is about (or its
PF, or a member of its IOMMU group) is hot-unplugged right before the N-th sysfs read
the operation makes, for N drawn over the whole operation.

Whatever N, the operation works or raises a HostdevError whose message is one line
(DeviceNotFound, mostly), and a later ``reconcile`` leaves no record of a device that
is gone. (tests/safety/test_fault_suite.py does the same at each write.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hypothesis import event, given, settings
from hypothesis import strategies as st
from pyfakefs.fake_filesystem_unittest import Patcher

from hostdev.address import PciAddress
from hostdev.errors import HostdevError
from hostdev.linux.sysfs import Sysfs
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, VfNetConfig
from hostdev.testing import FakeKernel
from tests.fuzzing import FUZZ, assert_one_line
from tests.smallhost import GPU, GPU_AUDIO, NIC, NVME, PF, VM1, build_host

Setup = Callable[[HostdevManager], list[PciAddress]]
Action = Callable[[HostdevManager, list[PciAddress]], object]


def _vfs(count: int) -> Setup:
    return lambda mgr: mgr.set_num_vfs(PF, count).vfs


def _none(mgr: HostdevManager) -> list[PciAddress]:
    return []


#: name: (set-up, the operation, the device that vanishes)
SCENARIOS: dict[str, tuple[Setup, Action, PciAddress]] = {
    "node_detach": (_none, lambda m, _: m.node_detach(NIC), NIC),
    "node_detach, a group member vanishes": (_none, lambda m, _: m.node_detach(GPU),
                                             GPU_AUDIO),
    "prepare a group": (_none, lambda m, _: m.prepare(VM1, [GPU, GPU_AUDIO]), GPU),
    "prepare a VF, its PF vanishes": (_vfs(2), lambda m, v: m.prepare(VM1, [v[0]]), PF),
    "prepare a VF with network settings, its PF vanishes": (
        _vfs(2), lambda m, v: m.prepare(VM1, [HostdevSpec(
            address=v[0], net=VfNetConfig(mac="52:54:00:00:00:01", vlan=5))]), PF),
    "reattach": (lambda m: (m.prepare(VM1, [NIC]), [])[1],
                 lambda m, _: m.reattach(VM1, [NIC]), NIC),
    "node_reattach": (lambda m: (m.node_detach(NIC), [])[1],
                      lambda m, _: m.node_reattach(NIC), NIC),
    "node_reset": (lambda m: (m.node_detach(NVME), [])[1], lambda m, _: m.node_reset(NVME),
                   NVME),
    "set_num_vfs": (_vfs(2), lambda m, _: m.set_num_vfs(PF, 4), PF),
    "allocate": (_vfs(4), lambda m, _: m.allocate(VM1, 2), PF),
    "reconcile": (lambda m: (m.node_detach(NIC), m.node_detach(NVME), [])[2],
                  lambda m, _: m.reconcile(), NVME),
}


@contextmanager
def _vanish_at_read(kernel: FakeKernel, address: PciAddress, n: int) -> Iterator[list[bool]]:
    """Remove ``address`` right before the ``n``-th read through the sysfs boundary;
    yields [whether it was removed]."""
    original = Sysfs._before_read
    count = [0]
    fired = [False]

    def before_read(self: Sysfs, path: str) -> None:
        count[0] += 1
        if count[0] == n and not fired[0]:
            fired[0] = True
            kernel.remove_device(address)
        original(self, path)

    Sysfs._before_read = before_read  # type: ignore[method-assign]
    try:
        yield fired
    finally:
        Sysfs._before_read = original  # type: ignore[method-assign]


@settings(FUZZ, max_examples=80)  # a fresh host each: about 30 ms an example
@given(name=st.sampled_from(sorted(SCENARIOS)), n=st.integers(1, 16))
def test_a_device_vanishing_mid_operation(name: str, n: int) -> None:
    setup, action, victim = SCENARIOS[name]
    patcher = Patcher()
    patcher.setUp()
    try:
        assert patcher.fs is not None
        kernel = FakeKernel(patcher.fs)
        build_host(kernel)
        kernel.add_netdev(PF, "ens1f0")
        mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0.0,
                             lock_timeout=1.0, module_loader=kernel.modprobe)
        vfs = setup(mgr)
        with _vanish_at_read(kernel, victim, n) as fired:
            try:
                action(mgr, vfs)
                event("worked")
            except HostdevError as exc:
                assert_one_line(str(exc))
                event(type(exc).__name__)
        event("vanished" if fired[0] else "all reads made before the N-th")
        report = mgr.reconcile()
        assert not report.failed, report.failed
        tracked = {*mgr.lists().active, *mgr.lists().inactive}
        gone = {address for address in tracked if not kernel.has_device(address)}
        assert not gone, f"{name}: records of vanished devices survived: {gone}"
    finally:
        patcher.tearDown()
