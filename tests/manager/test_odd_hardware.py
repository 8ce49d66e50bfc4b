"""Moving devices on hardware the fake first did not model: no IOMMU, vfio variant
drivers named with underscores, stub modules not loaded, ``stub_driver="auto"``, and
PCI domains above 0xffff."""

from __future__ import annotations

import os

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem

from hostdev.address import PciAddress
from hostdev.cli.main import main
from hostdev.errors import ModuleLoadFailed, NotAssignable
from hostdev.linux.binding import current_driver
from hostdev.linux.drivers import is_group_safe, is_stub_driver, is_vfio_driver
from hostdev.linux.modules import choose_stub
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner
from hostdev.testing import FakeKernel

VM1 = Owner(driver="qemu", domain="vm1")
NIC = PciAddress.parse("0000:04:00.0")
PF, VF0, VF1 = (PciAddress.parse(a) for a in ("0000:01:00.0", "0000:01:00.2", "0000:01:00.3"))
VMD_NVME = PciAddress.parse("10000:e1:00.0")
STATE = "/run/hostdev"


def _mgr(kernel: FakeKernel, **options: object) -> HostdevManager:
    options.setdefault("module_loader", kernel.modprobe)
    return HostdevManager(root="/", state_dir=STATE, release_timeout=0.0,
                          **options)  # type: ignore[arg-type]


def _driver(mgr: HostdevManager, address: PciAddress) -> str | None:
    return current_driver(mgr.sysfs, address)


# ------------------------------------------------------------------ no IOMMU


def _plain_host(kernel: FakeKernel) -> None:
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    kernel.add_driver("vfio-pci")
    kernel.add_driver("pci-stub")
    kernel.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=4)


def test_iommu_off_refuses_vfio_before_any_write(fs: FakeFilesystem) -> None:
    kernel = FakeKernel(fs, iommu=False)
    _plain_host(kernel)
    mgr = _mgr(kernel)
    for attempt in (lambda: mgr.prepare(VM1, [NIC]), lambda: mgr.node_detach(NIC)):
        with pytest.raises(NotAssignable) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(f"cannot move PCI device {NIC} to vfio-pci: the IOMMU is off")
        assert "intel_iommu=on" in message and "amd_iommu=on" in message
        assert "VT-d" in message and "\n" not in message
    assert kernel.writes == []
    assert _driver(mgr, NIC) == "e1000e" and mgr.inactive() == [] and mgr.active() == []


def test_iommu_off_still_allows_pci_stub(fs: FakeFilesystem) -> None:
    kernel = FakeKernel(fs, iommu=False)
    _plain_host(kernel)
    mgr = _mgr(kernel)
    assert mgr.node_detach(NIC, stub_driver="pci-stub").action == "detached to pci-stub"
    assert _driver(mgr, NIC) == "pci-stub"


def test_iommu_off_cli_is_one_line(fs: FakeFilesystem,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    kernel = FakeKernel(fs, iommu=False)
    _plain_host(kernel)
    assert main(["--state-dir", STATE, "detach", str(NIC)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the IOMMU is off" in err
    assert kernel.writes == []


def test_device_outside_the_iommu_on_a_host_with_one(fake_kernel: FakeKernel) -> None:
    _plain_host(fake_kernel)
    lone = PciAddress.parse("0000:05:00.0")
    fake_kernel.add_device(lone, 0x8086, 0x10D3, 0x020000)  # no iommu_group
    mgr = _mgr(fake_kernel)
    with pytest.raises(NotAssignable, match="it has no IOMMU group"):
        mgr.node_detach(lone)
    assert fake_kernel.writes == []


def test_fixture_host_without_iommu(fake_kernel: FakeKernel, fs: FakeFilesystem) -> None:
    from hostdev.testing import read_host_spec

    spec = read_host_spec("two-socket-server").model_copy(update={"iommu": False})
    fake_kernel.load_spec(spec)
    assert os.listdir("/sys/kernel/iommu_groups") == []
    assert all(fake_kernel.device_state(a).iommu_group is None
               for a in fake_kernel.addresses())


# ------------------------------------------------------------------ variant drivers


@pytest.mark.parametrize("name", ["vfio-pci", "vfio_pci", "mlx5_vfio_pci", "hisi_acc_vfio_pci",
                                  "pds_vfio_pci", "nvgrace-gpu-vfio-pci"])
def test_variant_names_are_vfio(name: str) -> None:
    assert is_vfio_driver(name) and is_stub_driver(name) and is_group_safe(name)


def test_unknown_name_is_vfio_only_with_a_vfio_dev_node() -> None:
    assert not is_vfio_driver("acme_passthru")
    assert is_vfio_driver("acme_passthru", has_vfio_dev=True)
    assert not is_vfio_driver("vfio_pci_core") and not is_vfio_driver("mlx5_core")


@pytest.mark.parametrize("variant", ["mlx5_vfio_pci", "acme_passthru"])
def test_underscore_variant_driver_is_a_vfio_driver(fake_kernel: FakeKernel,
                                                    variant: str) -> None:
    _plain_host(fake_kernel)
    # acme_passthru: a name that says nothing; it registers with vfio all the same.
    fake_kernel.add_driver(variant, vfio=True if variant == "acme_passthru" else None)
    mgr = _mgr(fake_kernel)
    report = mgr.prepare(VM1, [HostdevSpec(address=NIC, stub_driver=variant)])
    assert report.prepared[0].stub_driver == variant
    base = f"/sys/bus/pci/devices/{NIC}"
    assert os.path.isdir(f"{base}/vfio-dev") and os.path.exists("/dev/vfio/4")
    # vfio resets the device itself: no reset write, as for vfio-pci.
    assert not [w for w in fake_kernel.writes if str(w[0]).endswith(f"{NIC}/reset")]
    holder = fake_kernel.hold_vfio(NIC)
    report_back = mgr.reattach(VM1, [NIC], release_timeout=0.0)
    assert not report_back.ok and _driver(mgr, NIC) == variant  # waited for the holder
    holder.release()
    assert mgr.reattach(VM1, [NIC]).ok
    assert _driver(mgr, NIC) == "e1000e" and not os.path.exists("/dev/vfio/4")


# ------------------------------------------------------------------ loading the stub


def _host_without_vfio(kernel: FakeKernel) -> None:
    kernel.add_driver("e1000e", ids=[(0x8086, 0x10D3)])
    kernel.add_device(NIC, 0x8086, 0x10D3, 0x020000, iommu_group=4)
    kernel.add_module("vfio_pci", driver="vfio-pci", aliases=["vfio_pci:v*d*sv*sd*bc*sc*i*"])


def test_missing_stub_is_loaded(fake_kernel: FakeKernel) -> None:
    _host_without_vfio(fake_kernel)
    loaded: list[str] = []

    def loader(name: str) -> None:
        loaded.append(name)
        fake_kernel.modprobe(name)

    mgr = _mgr(fake_kernel, module_loader=loader)
    assert not os.path.exists("/sys/bus/pci/drivers/vfio-pci")
    mgr.prepare(VM1, [NIC])
    assert loaded == ["vfio-pci"] and _driver(mgr, NIC) == "vfio-pci"
    mgr.reattach(VM1, [NIC])
    mgr.prepare(VM1, [NIC])
    assert loaded == ["vfio-pci"]  # loaded once: the second prepare found it registered


def test_load_modules_off_refuses(fake_kernel: FakeKernel) -> None:
    _host_without_vfio(fake_kernel)
    mgr = _mgr(fake_kernel, load_modules=False)
    with pytest.raises(NotAssignable, match="driver vfio-pci is not loaded; run 'modprobe"
                                            " vfio_pci' first"):
        mgr.node_detach(NIC)
    assert fake_kernel.writes == [] and mgr.inactive() == []


def test_failed_load_is_one_line_and_changes_nothing(fake_kernel: FakeKernel) -> None:
    _host_without_vfio(fake_kernel)
    mgr = _mgr(fake_kernel)
    with pytest.raises(NotAssignable) as info:
        mgr.node_detach(NIC, stub_driver="no_such_stub")
    assert str(info.value) == (
        f"cannot detach PCI device {NIC}: driver no_such_stub is not loaded and cannot load"
        " module no_such_stub: modprobe failed: modprobe: FATAL: Module no_such_stub not found"
        " in directory /lib/modules/6.1.0-fake")
    assert fake_kernel.writes == [] and _driver(mgr, NIC) == "e1000e"


def test_loaded_module_without_the_driver_is_refused(fake_kernel: FakeKernel,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _host_without_vfio(fake_kernel)
    monkeypatch.setattr("hostdev.linux.modules.time.sleep", lambda _s: None)
    mgr = _mgr(fake_kernel, module_loader=lambda name: None)  # "loads" nothing
    with pytest.raises(NotAssignable, match="no PCI driver vfio-pci appeared"):
        mgr.node_detach(NIC)
    assert fake_kernel.writes == []


def test_modules_are_loaded_on_the_real_root_only(tmp_path: object) -> None:
    assert HostdevManager(root="/", state_dir="/tmp/x").module_loader is not None
    assert HostdevManager(root="/", state_dir="/tmp/x", load_modules=False).module_loader is None
    assert HostdevManager(root=str(tmp_path), state_dir="/tmp/x").module_loader is None


def test_cli_loads_the_stub_and_can_be_told_not_to(
        fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _host_without_vfio(fake_kernel)
    calls: list[str] = []

    def fake_modprobe(name: str, timeout: float) -> None:
        calls.append(name)
        fake_kernel.modprobe(name)

    monkeypatch.setattr("hostdev.manager.run_modprobe", fake_modprobe)
    assert main(["--state-dir", STATE, "--no-load-modules", "detach", str(NIC)]) == 1
    assert "run 'modprobe vfio_pci' first" in capsys.readouterr().err and calls == []
    assert main(["--state-dir", STATE, "detach", str(NIC)]) == 0
    assert capsys.readouterr().out == f"{NIC}: detached to vfio-pci\n" and calls == ["vfio-pci"]


# ------------------------------------------------------------------ stub_driver="auto"


def test_auto_picks_the_variant_driver_and_records_it(fake_kernel: FakeKernel) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    mgr = _mgr(fake_kernel)
    assert choose_stub(mgr.sysfs, VF0) == "mlx5_vfio_pci"
    assert choose_stub(mgr.sysfs, VMD_NVME) == "vfio-pci"
    assert not os.path.exists("/sys/bus/pci/drivers/mlx5_vfio_pci")
    report = mgr.prepare(VM1, [HostdevSpec(address=VF0, stub_driver="auto")])
    assert report.prepared[0].stub_driver == "mlx5_vfio_pci"  # the resolved name
    assert _driver(mgr, VF0) == "mlx5_vfio_pci"
    assert os.path.isdir(f"/sys/bus/pci/devices/{VF0}/vfio-dev")
    assert mgr.active()[0].stub_driver == "mlx5_vfio_pci"
    result = mgr.node_detach(VMD_NVME, stub_driver="auto")
    assert result.action == "detached to vfio-pci"
    assert mgr.inactive()[0].stub_driver == "vfio-pci"


def test_auto_without_modules_alias_falls_back_to_vfio_pci(fake_kernel: FakeKernel) -> None:
    _plain_host(fake_kernel)
    mgr = _mgr(fake_kernel)
    assert choose_stub(mgr.sysfs, NIC) == "vfio-pci"
    assert mgr.node_detach(NIC, stub_driver="auto").action == "detached to vfio-pci"


def test_cli_driver_auto(fake_kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    fake_kernel.load_fixture("vmd-workstation")
    monkeypatch.setattr("hostdev.manager.run_modprobe",
                        lambda name, timeout: fake_kernel.modprobe(name))
    assert main(["--state-dir", STATE, "detach", "--driver", "auto", str(VF1)]) == 0
    assert capsys.readouterr().out == f"{VF1}: detached to mlx5_vfio_pci\n"
    assert main(["--state-dir", STATE, "assign", "--owner", "qemu/vm1", "--driver", "auto",
                 str(VF0)]) == 0
    assert "on mlx5_vfio_pci" in capsys.readouterr().out


def test_fake_modprobe_failure_type(fake_kernel: FakeKernel) -> None:
    with pytest.raises(ModuleLoadFailed, match="Module nope not found"):
        fake_kernel.modprobe("nope")


# ------------------------------------------------------------------ big domains


def test_prepare_and_reattach_in_a_domain_above_ffff(fake_kernel: FakeKernel) -> None:
    _plain_host(fake_kernel)
    big = PciAddress.parse("10000:e2:00.0")
    fake_kernel.add_device(big, 0x8086, 0x10D3, 0x020000, iommu_group=9)
    mgr = _mgr(fake_kernel)
    report = mgr.prepare(VM1, [big, NIC])
    assert [str(r.address) for r in report.prepared] == [str(big), str(NIC)]
    fresh = _mgr(fake_kernel)  # read back from the state file
    assert [str(r.address) for r in fresh.active()] == [str(NIC), "10000:e2:00.0"]
    assert fresh.used_by("10000:e2:00.0") == VM1
    assert fresh.reattach(VM1, [big, NIC]).ok
    assert _driver(fresh, big) == "e1000e"


def test_identity_check_survives_a_garbage_physfn(fake_kernel: FakeKernel,
                                                  fs: FakeFilesystem) -> None:
    from hostdev.ops.identity import Presence, check_identity
    from hostdev.state.records import DeviceRecord

    fake_kernel.load_fixture("vmd-workstation")
    # A record from an older state file (no identity): the physfn link is read.
    record = DeviceRecord(address=VF0, vendor=0x15B3, device=0x101E, pf=PF, vf_index=0)
    path = os.path.realpath(f"/sys/bus/pci/devices/{VF0}") + "/physfn"
    fs.remove_object(path)
    fs.create_symlink(path, "../../../../etc")
    assert check_identity(_mgr(fake_kernel).sysfs, record) is Presence.PRESENT
