"""Commands that change the host: detach, reattach, reset, assign, release, prune."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from hostdev.address import PciAddress
from hostdev.manager import HostdevManager
from hostdev.state.records import HostdevSpec, Owner

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pydantic import BaseModel


def manager(args: argparse.Namespace) -> HostdevManager:
    """A manager for the global ``--root`` and ``--state-dir`` options."""
    mgr = HostdevManager(root=args.root, state_dir=args.state_dir,
                         release_timeout=args.release_timeout,
                         load_modules=getattr(args, "load_modules", True))
    mgr.sysfs.check_tree()
    return mgr


def _addresses(texts: Sequence[str]) -> list[PciAddress]:
    return [PciAddress.parse(t) for t in texts]


def _emit(args: argparse.Namespace, model: BaseModel, lines: Sequence[str]) -> None:
    if getattr(args, "json", False):
        sys.stdout.write(model.model_dump_json(indent=2) + "\n")
    else:
        for line in lines:
            print(line)


def cmd_detach(args: argparse.Namespace) -> int:
    """Move free devices onto the stub driver (``node_detach``)."""
    addrs = _addresses(args.addresses)
    mgr = manager(args)
    for addr in addrs:
        result = mgr.node_detach(addr, stub_driver=args.driver, force=args.force)
        print(f"{addr}: {result.action}")
    return 0


def cmd_reattach(args: argparse.Namespace) -> int:
    """Give free devices back to their host drivers (``node_reattach``)."""
    addrs = _addresses(args.addresses)
    mgr = manager(args)
    for addr in addrs:
        result = mgr.node_reattach(addr)
        print(f"{addr}: {result.action}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """Reset one free device."""
    addr = PciAddress.parse(args.address)
    result = manager(args).node_reset(addr)
    print(f"{addr}: {result.action}")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    """Prepare devices for an owner."""
    owner = Owner.parse(args.owner)
    from hostdev.address import validate_driver_name

    stub = validate_driver_name(args.driver)
    specs = [HostdevSpec(address=a, managed=not args.unmanaged, stub_driver=stub)
             for a in _addresses(args.addresses)]
    report = manager(args).prepare(owner, specs, force=args.force)
    lines = [f"{r.address}: assigned to {owner} on {r.stub_driver}" for r in report.prepared]
    lines += [f"{r.address}: stale record pruned (device re-created)" for r in report.pruned]
    _emit(args, report, lines)
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Reattach an owner's devices; exit 1 if any failed."""
    owner = Owner.parse(args.owner)
    report = manager(args).reattach(owner, _addresses(args.addresses))
    lines = [f"{a}: given back to the host, now on {report.drivers.get(a) or 'no driver'}"
             for a in report.reattached]
    lines += [f"{a}: released, kept on its stub (inactive)" for a in report.kept_on_stub]
    lines += [f"{r.address}: vanished from the host; record pruned" for r in report.pruned]
    lines += [f"{f.address}: FAILED: {f.reason}" for f in report.failed]
    lines += [f"warning: {w}" for w in report.warnings]
    _emit(args, report, lines)
    return 0 if report.ok else 1


def cmd_prune(args: argparse.Namespace) -> int:
    """Drop records of devices that vanished."""
    pruned = manager(args).prune_missing()
    if getattr(args, "json", False):
        print(json.dumps([json.loads(r.model_dump_json()) for r in pruned], indent=2))
    elif not pruned:
        print("nothing to prune")
    for record in pruned if not getattr(args, "json", False) else []:
        owner = f" (was {record.owner})" if record.owner else ""
        print(f"{record.address}: pruned{owner}")
    return 0


def cmd_sriov(args: argparse.Namespace) -> int:
    """Set a PF's VF count."""
    pf = PciAddress.parse(args.pf)
    report = manager(args).set_num_vfs(pf, args.count, force=args.force)
    lines = [f"{pf}: {report.before} -> {report.after} VFs"
             + (" (through 0: the kernel refuses a direct change)"
                if report.went_through_zero else "")]
    lines += [f"{r.address}: record pruned (VF vanished)" for r in report.pruned]
    lines += [f"{r.address}: ORPHANED: was assigned to {r.owner}" for r in report.orphaned]
    _emit(args, report, lines)
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Compare the state with the host and fix what is safe; exit 1 if recovery failed."""
    report = manager(args).reconcile()
    lines = [f"recovered: {line}" for line in report.recovered]
    lines += [f"FAILED: {line}" for line in report.failed]
    lines += [f"{r.address}: vanished; record pruned" for r in report.pruned]
    lines += [f"{r.address}: re-created at the same address; stale record dropped"
              for r in report.stale]
    lines += [f"{c.address}: driver changed behind our back: expected {c.expected},"
              f" found {c.found or 'none'}" for c in report.driver_changed]
    lines += [f"{r.address}: not given back yet: no driver ({r.original_driver} did not take"
              f" it); 'hostdev reattach {r.address}' finishes" for r in report.unfinished]
    lines += [f"blocked: {line}" for line in report.blocked]
    if not lines:
        lines = ["the lists agree with the host"]
    _emit(args, report, lines)
    return 1 if report.failed else 0
