"""Fail each kernel write of prepare and reattach in turn; check what is left behind.

The fake kernel itself refuses the chosen write (``fail_write`` armed just
before it), so the library sees exactly what a real refusal looks like.
"""

from __future__ import annotations

import errno

import pytest

from hostdev.errors import HostdevError
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec
from hostdev.testing import FakeKernel, WriteWatch
from tests.smallhost import NIC, NVME, VM1, Host, build_host

DEVICES = (NIC, NVME)


def fail_nth_write(kernel: FakeKernel, n: int, err: int) -> WriteWatch:
    """Make the n-th sysfs write (0-based) from now on fail with ``err`` in the kernel."""
    return kernel.watch_writes(lambda path, address: kernel.fail_write(path, err, times=1),
                               at=n + 1)


def _specs() -> list[HostdevSpec]:
    return [HostdevSpec(address=NIC), HostdevSpec(address=NVME, stub_driver="pci-stub")]


@pytest.mark.parametrize("err", [errno.EIO, errno.EBUSY, errno.ENODEV])
def test_prepare_rolls_back_at_every_write(host: Host, err: int) -> None:
    before = host.where(*DEVICES)
    total = host.kernel.count_writes(lambda: host.mgr.prepare(VM1, _specs()))
    assert total >= 6
    host.mgr.reattach(VM1, list(DEVICES))
    assert host.where(*DEVICES) == before
    for n in range(total):
        with fail_nth_write(host.kernel, n, err) as watch, pytest.raises(HostdevError):
            host.mgr.prepare(VM1, _specs())
        assert len(watch.seen) > n, f"write {n} was never reached"
        assert host.where(*DEVICES) == before, f"device moved after failing write {n}"
        assert host.mgr.active() == [] and host.mgr.inactive() == [], f"lists after {n}"


@pytest.mark.parametrize("err", [errno.EIO, errno.EBUSY])
def test_reattach_failure_leaves_every_device_restorable(host: Host, err: int) -> None:
    before = host.where(*DEVICES)
    host.mgr.prepare(VM1, _specs())
    total = host.kernel.count_writes(lambda: host.mgr.reattach(VM1, list(DEVICES)))
    assert total >= 6
    for n in range(total):
        host.mgr.prepare(VM1, _specs())
        with fail_nth_write(host.kernel, n, err):
            report = host.mgr.reattach(VM1, list(DEVICES))
        for addr in DEVICES:
            tracked = any(r.address == addr for r in host.mgr.active() + host.mgr.inactive())
            back = host.where(addr) == {addr: before[addr]}
            assert tracked or back, f"{addr} lost after failing reattach write {n}"
            if not back:
                assert addr in [f.address for f in report.failed] or report.warnings
        for record in host.mgr.inactive():
            host.mgr.node_reattach(record.address)
        assert host.where(*DEVICES) == before
        assert host.mgr.inactive() == [] and host.mgr.active() == []


def test_rollback_that_cannot_undo_keeps_the_device_tracked(fake_kernel: FakeKernel) -> None:
    build_host(fake_kernel)
    mgr = HostdevManager(root="/", state_dir="/run/hostdev", release_timeout=0)
    # NIC moves to vfio-pci, then NVME's probe fails; undoing NIC fails as well.
    fake_kernel.fail_probe("pci-stub", errno.EIO)
    fake_kernel.fail_write("/sys/bus/pci/drivers/vfio-pci/unbind", errno.EIO, times=None)
    with pytest.raises(HostdevError, match="rollback incomplete"):
        mgr.prepare(VM1, _specs())
    assert [r.address for r in mgr.inactive()] == [NIC]
    assert mgr.inactive()[0].original_driver == "e1000e"
