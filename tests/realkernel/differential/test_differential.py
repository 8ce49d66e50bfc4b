"""Differential check of the fake kernel against what the real kernel was seen doing.

tests/realkernel/observed/<kernel>.json holds every observation the inner real-kernel
suite made in the QEMU guest (recorded with ``HOSTDEV_REALKERNEL_RECORD=1``). Here,
with no QEMU, each inner scenario is replayed on the fake kernel loaded with the
guest's fixture host (``load_fixture("qemu-guest")``, inside pyfakefs, on a FakeKernel
built with the guest kernel's options, fakeio.GUEST_KERNEL) and
every record is compared: errno names, file contents, links, which files and
directories exist.

Each record of the data ends up in exactly one of:

* ``test_scenario_agrees[...]``: the fake must give the real value (fails otherwise);
* ``test_known_difference[...]``: the fake is wrong today; ``xfail(strict=True)``
  with the precise difference, so it turns into a failure once the fake is fixed
  (then delete the entry from KNOWN_DIFFERENCES);
* ``test_not_modelled[...]``: skipped, with the reason the fake cannot play it.

Replays open files with O_TRUNC, as the library does; ``test_scenario_agrees_without
_o_trunc`` replays again with the inner tests' own flags (O_WRONLY only), which the
real kernel does not care about; the fake must not either (NO_TRUNC_DIFFERENCES).

``HOSTDEV_OBSERVED=/path/doc.json`` (or a run's ``observed.jsonl``) checks other data.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.helpers import reset_ids, set_uid

from hostdev.testing import FakeKernel

from .fakeio import MARKER, FakeGuest, Recorder, guest_kernel
from .observed import LAYOUT_NAME, LAYOUT_TEST, RECORDS, Record
from .replays import KERNEL_OPTIONS, REPLAYS

# ----------------------------------------------------------------------------- the tables

#: Whole inner scenarios with no replay, and why.
NOT_REPLAYED: dict[str, str] = {
    "test_vfio.py::test_group_fds_alone_do_not_block_unbind":
        "a VFIO user holding only the container and group fds (no device fd) cannot be"
        " built: FakeKernel.hold_vfio always opens a device fd too",
}

_TIMING = ("durations are not modelled: the fake kernel takes no time (no 1 s sleep in"
           " sriov_disable, no waits)")
_KMSG = "the kernel log is not modelled: the fake's /dev/kmsg is an empty node"
_NVME_ASYNC = ("device behaviour, not kernel behaviour: QEMU's VFs are not provisioned, so"
               " nvme's probe fails asynchronously and it lets go of them; the replay plays"
               " that out with an nvme/unbind (FakeGuest.nvme_gives_up), so this value is"
               " the replay's own")
_HOLDER = ("the real holder is a process doing VFIO ioctls (vfio_holder.py); the fake's"
           " hold_vfio gives the same /proc picture but no ioctl results")

#: Records of replayed scenarios that the fake cannot produce: (test, name glob) -> why.
NOT_MODELLED: dict[tuple[str, str], str] = {
    ("test_reset.py::test_reset_values", "VF reset took (s)"): _TIMING,
    ("test_sriov.py::test_numvfs_zero_removes_vfs", "numvfs 0 took (s)"): _TIMING,
    ("test_sriov.py::test_numvfs_zero_removes_vfs", "write 0 took at least 1 s"): _TIMING,
    ("test_sriov.py::test_vf_autoprobe_on", "nvme gave up on the unprovisioned VFs*"): _TIMING,
    ("test_vfio.py::test_vfio_bind_and_unbind_nodes", "unbind with no user took (s)"): _TIMING,
    ("test_vfio.py::test_vfio_pf_with_enable_sriov", "PF unbind with 2 idle vfio VFs took (s)"):
        _TIMING,
    ("test_vfio.py::test_vfio_user_holding_a_vf", "unbind after release took (s)"): _TIMING,
    ("test_sriov.py::test_numvfs_change_needs_zero_first", "kernel log on EBUSY"): _KMSG,
    ("test_vfio.py::test_vfio_user_holding_a_vf", "no 'blocked until released' warning"):
        _KMSG,
    ("test_sriov.py::test_vf_autoprobe_on", "VF drivers after settling"): _NVME_ASYNC,
    ("test_sriov.py::test_new_id_probes_unbound_vfs", "VFs left unbound by nvme"): _NVME_ASYNC,
    ("test_vfio.py::test_vfio_pf_with_enable_sriov", "enable_sriov=Y"):
        "module parameters are not modelled: vfio-pci's enable_sriov is the FakeKernel"
        " option vfio_enable_sriov, fixed when the fake is built (the replay builds it on)",
    ("test_vfio_counts.py::test_vfio_user_counts", "BAR0 region"):
        _HOLDER + " (VFIO_DEVICE_GET_REGION_INFO: BAR0's size and flags)",
    ("test_vfio.py::test_vfio_user_holding_a_vf", "holder report"):
        _HOLDER + " (VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, fd numbers)",
    ("test_vfio.py::test_vfio_user_holding_a_vf", "holder got a device fd"):
        _HOLDER + " (VFIO_GROUP_GET_DEVICE_FD)",
    ("test_vfio.py::test_vfio_user_holding_a_vf", "group viable (only vfio-pci in it)"):
        _HOLDER + " (VFIO_GROUP_GET_STATUS; hold_vfio only refuses non-viable groups)",
    ("test_vfio.py::test_vfio_user_holding_a_vf", "holder /proc/PID/fd targets"):
        "the holder process's own stdio (pipes) is not kernel state; the vfio fds are"
        " compared in 'fd targets of container, group, device'",
    ("test_vfio.py::test_vfio_user_holding_a_vf", "holder closed"):
        "the helper process's own output (how many fds it closed)",
    ("test_vfio.py::test_vfio_user_holding_a_vf", "second open of the group node while held"):
        "opening /dev/vfio/<group> is not modelled (vfio_group_fops_open allows one open"
        " at a time: EBUSY): the fake's group node is an inert file pyfakefs opens freely",
}

#: Records where the fake kernel is wrong today: (test, name) -> the difference.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {}

#: Scenarios that differ when written exactly as the inner tests write (os.open with
#: O_WRONLY and no O_TRUNC) although they agree with O_TRUNC: test -> the difference.
NO_TRUNC_DIFFERENCES: dict[str, str] = {}


def _not_modelled_reason(record: Record) -> str | None:
    if (record.test, record.name) == (LAYOUT_TEST, LAYOUT_NAME):
        return "the guest's PCI layout: compared field by field in test_fixture_layout.py"
    if record.test.startswith("test_library_"):
        return "a library scenario (hostdev on the real kernel), not a kernel behaviour"
    if record.test not in REPLAYS:
        reason = NOT_REPLAYED.get(record.test, "no replay written for this inner test")
        return f"scenario not replayed: {reason}"
    for (test, pattern), reason in NOT_MODELLED.items():
        if test == record.test and fnmatch.fnmatchcase(record.name, pattern):
            return reason
    return None


def _classify() -> tuple[dict[tuple[str, str], list[Record]], list[Record], list[Record]]:
    compared: dict[tuple[str, str], list[Record]] = {}
    known: list[Record] = []
    skipped: list[Record] = []
    for record in RECORDS:
        if _not_modelled_reason(record) is not None:
            skipped.append(record)
        elif record.key in KNOWN_DIFFERENCES:
            known.append(record)
        else:
            compared.setdefault((record.kernel, record.test), []).append(record)
    return compared, known, skipped


COMPARED, KNOWN, SKIPPED = _classify()


# ----------------------------------------------------------------------------- replaying


@pytest.fixture
def root_fs(fs: FakeFilesystem) -> Iterator[FakeFilesystem]:
    """pyfakefs as root (the inner suite runs as root in the guest), with the marker."""
    set_uid(0)
    fs.create_file(MARKER)
    yield fs
    reset_ids()


@pytest.fixture
def fake_guest_kernel(root_fs: FakeFilesystem) -> FakeKernel:
    """An empty fake kernel built as the guest's kernel (fakeio.GUEST_KERNEL)."""
    return guest_kernel(root_fs)


def _replay(test: str, fs: FakeFilesystem, fake_kernel: FakeKernel, *,
            truncate: bool = True) -> dict[str, Any]:
    """Run the replay of ``test`` on a fake kernel loaded with the qemu-guest fixture."""
    options = KERNEL_OPTIONS.get(test)
    kernel = fake_kernel
    if options:  # a scenario that changes a kernel option (a module parameter)
        fs.reset()
        fs.create_file(MARKER)
        kernel = guest_kernel(fs, **options)
    kernel.load_fixture("qemu-guest")
    recorder = Recorder()
    REPLAYS[test](FakeGuest(kernel, truncate=truncate), recorder)
    return recorder.values


def _differences(records: list[Record], values: dict[str, Any]) -> list[str]:
    lines = []
    for record in records:
        if record.name not in values:
            near = sorted(n for n in values if n.split(" ")[:2] == record.name.split(" ")[:2])
            lines.append(f"{record.name!r}: real {record.observed!r}, fake recorded nothing"
                         + (f" (it has {near})" if near else ""))
        elif values[record.name] != record.observed:
            lines.append(f"{record.name!r}: real {record.observed!r}, "
                         f"fake {values[record.name]!r}")
    return lines


@pytest.mark.parametrize("scenario", sorted(COMPARED), ids=lambda s: f"{s[0]}:{s[1]}")
def test_scenario_agrees(scenario: tuple[str, str], root_fs: FakeFilesystem,
                         fake_guest_kernel: FakeKernel) -> None:
    """Every comparable record of one inner scenario: the fake gives the real value."""
    records = COMPARED[scenario]
    values = _replay(scenario[1], root_fs, fake_guest_kernel)
    diff = _differences(records, values)
    assert not diff, "fake kernel differs from the real one:\n" + "\n".join(diff)


def _no_trunc_params() -> list[Any]:
    params = []
    for scenario in sorted(COMPARED):
        reason = NO_TRUNC_DIFFERENCES.get(scenario[1])
        marks = [pytest.mark.xfail(strict=True, reason=f"fake differs: {reason}")] if reason else []
        params.append(pytest.param(scenario, id=f"{scenario[0]}:{scenario[1]}", marks=marks))
    return params


@pytest.mark.parametrize("scenario", _no_trunc_params())
def test_scenario_agrees_without_o_trunc(scenario: tuple[str, str], root_fs: FakeFilesystem,
                                         fake_guest_kernel: FakeKernel) -> None:
    """The same, with the inner tests' own open flags (O_WRONLY, no O_TRUNC)."""
    records = COMPARED[scenario]
    try:
        values = _replay(scenario[1], root_fs, fake_guest_kernel, truncate=False)
    except AssertionError as exc:  # a set-up write of the replay failed
        pytest.fail(f"replay broke off: {exc}")
    diff = _differences(records, values)
    assert not diff, "fake kernel differs from the real one:\n" + "\n".join(diff)


def _known_params() -> list[Any]:
    return [pytest.param(r, id=r.id, marks=pytest.mark.xfail(
        strict=True, reason=f"fake differs: {KNOWN_DIFFERENCES[r.key]}")) for r in KNOWN]


@pytest.mark.parametrize("record", _known_params())
def test_known_difference(record: Record, root_fs: FakeFilesystem,
                          fake_guest_kernel: FakeKernel) -> None:
    """A record the fake gets wrong today (xfail, strict: it must start passing once fixed)."""
    values = _replay(record.test, root_fs, fake_guest_kernel)
    assert not _differences([record], values)


@pytest.mark.parametrize("record", SKIPPED, ids=lambda r: r.id)
def test_not_modelled(record: Record) -> None:
    """Listed, not silently dropped: why the fake cannot play this record."""
    pytest.skip(f"not modelled: {_not_modelled_reason(record)}")


def test_tables_name_real_records() -> None:
    """Every entry of the tables matches at least one record (no stale entries)."""
    keys = {r.key for r in RECORDS}
    tests = {r.test for r in RECORDS}
    stale: list[object] = [k for k in KNOWN_DIFFERENCES if k not in keys]
    stale += [k for k in NOT_MODELLED if not any(
        t == k[0] and fnmatch.fnmatchcase(n, k[1]) for t, n in keys)]
    stale += [t for t in NOT_REPLAYED if t not in tests]
    stale += [t for t in NO_TRUNC_DIFFERENCES if t not in tests]
    assert not stale, f"table entries that match no observed record: {stale}"
    dupes = {r.id for r in RECORDS if sum(s.id == r.id for s in RECORDS) > 1}
    assert not dupes, f"records observed twice under one name: {sorted(dupes)}"
