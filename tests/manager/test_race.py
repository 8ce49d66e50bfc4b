"""Real processes racing on one state directory: exactly one wins a device."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

from hostdev.errors import DeviceInUse
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner

ADDR = "0000:01:00.0"


def _static_tree(root: Path) -> None:
    """A one-device sysfs tree on the real disk: a VF parked on vfio-pci, no writes needed."""
    dev = root / "sys/devices/pci0000:00" / ADDR
    dev.mkdir(parents=True)
    for name, text in {"vendor": "0x8086", "device": "0x154c", "class": "0x020000",
                       "subsystem_vendor": "0x8086", "subsystem_device": "0x0000",
                       "numa_node": "-1", "driver_override": "vfio-pci"}.items():
        (dev / name).write_text(text + "\n")
    (root / "sys/bus/pci/devices").mkdir(parents=True)
    (root / "sys/bus/pci/drivers/vfio-pci").mkdir(parents=True)
    (root / "sys/bus/pci/devices" / ADDR).symlink_to(f"../../../devices/pci0000:00/{ADDR}")
    (root / "sys/kernel/iommu_groups/7/devices").mkdir(parents=True)
    (root / "sys/kernel/iommu_groups/7/devices" / ADDR).symlink_to(
        f"../../../../devices/pci0000:00/{ADDR}")
    (dev / "iommu_group").symlink_to("../../../kernel/iommu_groups/7")
    (dev / "driver").symlink_to("../../../bus/pci/drivers/vfio-pci")
    (dev / "vfio-dev" / "vfio0").mkdir(parents=True)
    (root / "proc").mkdir()


def _contender(root: str, state: str, name: str, start: mp.synchronize.Barrier,
               results: mp.Queue[tuple[str, str]]) -> None:
    mgr = HostdevManager(root=root, state_dir=state, lock_timeout=30)
    start.wait()
    try:
        mgr.prepare(Owner(driver="qemu", domain=name), [HostdevSpec(address=ADDR, managed=False)])
        results.put((name, "won"))
    except DeviceInUse as exc:
        results.put((name, f"in use: {exc}"))
    except Exception as exc:  # pragma: no cover - reported to the parent
        results.put((name, f"error: {exc!r}"))


def test_four_processes_one_winner(tmp_path: Path) -> None:
    _static_tree(tmp_path)
    state = tmp_path / "state"
    ctx = mp.get_context("fork")
    start = ctx.Barrier(4)
    results: mp.Queue[tuple[str, str]] = ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(str(tmp_path), str(state), f"vm{i}", start,
                                                  results)) for i in range(4)]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    winners = [n for n, r in outcomes.items() if r == "won"]
    assert len(winners) == 1, outcomes
    losers = [r for n, r in outcomes.items() if n not in winners]
    assert all(r.startswith("in use: PCI device 0000:01:00.0 is in use by driver qemu,")
               for r in losers), outcomes
    mgr = HostdevManager(root=str(tmp_path), state_dir=str(state))
    owner = mgr.used_by(ADDR)
    assert owner is not None and owner.domain == winners[0]
    assert oct(os.stat(state / "state.json").st_mode & 0o777) == "0o600"
