"""Commands that change the host: detach, reattach, reset, assign (addresses or
``--count``), release, prune, sriov, reconcile; each prints lines of text or, with
``--json``, one document."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from hostdev.address import PciAddress
from hostdev.cli.main import DONE_ATTRIBUTE
from hostdev.errors import BadInput, HostdevError
from hostdev.manager import HostdevManager
from hostdev.reports import NodeResult
from hostdev.state.records import HostdevSpec, Owner

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pydantic import BaseModel


def manager(args: argparse.Namespace) -> HostdevManager:
    """A manager for the global ``--root`` and ``--state-dir`` options."""
    mgr = HostdevManager(root=args.root, state_dir=args.state_dir,
                         release_timeout=args.release_timeout,
                         load_modules=getattr(args, "load_modules", True),
                         config_dir=getattr(args, "config_dir", None))
    mgr.sysfs.check_tree()
    return mgr


def _addresses(texts: Sequence[str]) -> list[PciAddress]:
    return [PciAddress.parse(t) for t in texts]


def document(name: str, content: BaseModel | dict[str, Any]) -> BaseModel:
    """The JSON document ``name`` (``hostdev schema NAME``) holding ``content``.

    The document models are imported only here: a command run without ``--json``
    never builds them, which keeps its start-up short.
    """
    from hostdev.cli.documents import DOCUMENTS

    return DOCUMENTS[name].model_validate(dict(content))


def emit(args: argparse.Namespace, name: str, content: BaseModel | dict[str, Any],
         lines: Sequence[str]) -> None:
    """Print document ``name`` holding ``content`` (with ``--json``), or ``lines``."""
    if getattr(args, "json", False):
        doc = document(name, content)
        sys.stdout.write(doc.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        for line in lines:
            print(line)


def _node_verb(args: argparse.Namespace, texts: Sequence[str],
               verb: Callable[[PciAddress], NodeResult], suffix: str = "") -> int:
    """Run a node verb on each address in turn; the text says each result as it comes
    (``suffix`` after each), the JSON document gives them all at the end (an error
    stops at that device)."""
    results: list[NodeResult] = []
    for addr in _addresses(texts):
        try:
            result = verb(addr)
        except HostdevError as exc:
            if results:  # the JSON error document says what was done before it
                done = document("node", {"results": results})
                setattr(exc, DONE_ATTRIBUTE, json.loads(done.model_dump_json(by_alias=True)))
            raise
        results.append(result)
        if not getattr(args, "json", False):
            print(f"{addr}: {result.action}{suffix}")
    if getattr(args, "json", False):
        emit(args, "node", {"results": results}, [])
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    """Move free devices onto the stub driver (``node_detach``)."""
    _addresses(args.addresses)  # every address checked before the first change
    mgr = manager(args)
    suffix = " (persistent)" if args.persistent else ""
    return _node_verb(args, args.addresses,
                      lambda a: mgr.node_detach(a, stub_driver=args.driver, force=args.force,
                                                persistent=args.persistent), suffix)


def cmd_reattach(args: argparse.Namespace) -> int:
    """Give free devices back to their host drivers (``node_reattach``)."""
    _addresses(args.addresses)
    mgr = manager(args)
    return _node_verb(args, args.addresses,
                      lambda a: mgr.node_reattach(a, persistent=args.persistent))


def cmd_reset(args: argparse.Namespace) -> int:
    """Reset one free device."""
    PciAddress.parse(args.address)
    return _node_verb(args, [args.address], manager(args).node_reset)


def cmd_assign(args: argparse.Namespace) -> int:
    """Prepare devices for an owner (``--count``: free VFs that ``allocate`` chooses)."""
    owner = Owner.parse(args.owner)
    from hostdev.address import validate_driver_name
    from hostdev.cli.netargs import net_config_from_args

    stub = validate_driver_name(args.driver)
    if args.count is not None:
        return _allocate(args, owner, stub)
    extra = [o for o, v in (("--pf", args.pf), ("--numa", args.numa),
                            ("--id", args.vendor_device)) if v is not None]
    if extra:
        raise BadInput(f"{extra[0]} chooses among free VFs: use it with --count N")
    if not args.addresses:
        raise BadInput("assign needs the devices' addresses, or --count N to let hostdev"
                       " choose free VFs")
    addresses = _addresses(args.addresses)
    net = net_config_from_args(args)
    if net is not None and net.mac is not None and len(addresses) > 1:
        raise BadInput("--mac names one VF's address: give one ADDRESS with it")
    specs = [HostdevSpec(address=a, managed=not args.unmanaged, stub_driver=stub, net=net)
             for a in addresses]
    report = manager(args).prepare(owner, specs, force=args.force)
    lines = [f"{r.address}: assigned to {owner} on {r.stub_driver}"
             + (f", network settings {_settings(r.net.fields())}" if r.net is not None else "")
             for r in report.prepared]
    lines += [f"{r.address}: stale record pruned (device re-created)" for r in report.pruned]
    emit(args, "assign", report, lines)
    return 0


def _allocate(args: argparse.Namespace, owner: Owner, stub: str) -> int:
    """``assign --count N``: allocate free VFs."""
    if args.addresses:
        raise BadInput("give the devices' addresses or --count N, not both")
    for option, given in (("--unmanaged", args.unmanaged), ("--force", args.force)):
        if given:
            raise BadInput(f"{option} does not apply to --count (VFs the host uses are"
                           " skipped, and chosen VFs are always managed)")
    from hostdev.cli.netargs import net_config_from_args

    report = manager(args).allocate(owner, args.count, pf=args.pf, numa_node=args.numa,
                                    vendor_device=args.vendor_device, stub_driver=stub,
                                    net=net_config_from_args(args))
    lines = []
    for r in report.prepared:
        vf = f" (VF {r.vf_index} of {r.pf})" if r.pf is not None else ""
        settings = f", network settings {_settings(r.net.fields())}" if r.net else ""
        lines.append(f"{r.address}: assigned to {owner} on {r.stub_driver}{vf}{settings}")
    lines += [f"{r.address}: stale record pruned (device re-created)" for r in report.pruned]
    lines += [f"{a}: not on NUMA node {args.numa} (too few free VFs there)"
              for a in report.off_node]
    emit(args, "allocate", report, lines)
    return 0


def _settings(values: dict[str, object]) -> str:
    return " ".join(f"{key} {value}" for key, value in values.items())


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
    emit(args, "release", report, lines)
    return 0 if report.ok else 1


def cmd_prune(args: argparse.Namespace) -> int:
    """Drop records of devices that vanished."""
    pruned = manager(args).prune_missing()
    lines = [f"{r.address}: pruned" + (f" (was {r.owner})" if r.owner else "") for r in pruned]
    emit(args, "prune", {"pruned": pruned}, lines or ["nothing to prune"])
    return 0


def cmd_sriov(args: argparse.Namespace) -> int:
    """Set a PF's VF count."""
    pf = PciAddress.parse(args.pf)
    report = manager(args).set_num_vfs(pf, args.count, force=args.force,
                                       persistent=args.persistent, stub_driver=args.stub)
    lines = [f"{pf}: {report.before} -> {report.after} VFs"
             + (" (through 0: the kernel refuses a direct change)"
                if report.went_through_zero else "")
             + ((" (persistent)" if args.count else " (persistent VF count dropped)")
                if args.persistent else "")]
    lines += [f"{vf.address}: {vf.action} (inactive)" for vf in report.detached]
    if args.stub and report.before == report.after and report.after:
        lines.append(f"no VF created, so none moved to {args.stub}: the VFs there stay where"
                     " they are ('hostdev detach' moves them)")
    lines += [f"{r.address}: record pruned (VF vanished)" for r in report.pruned]
    lines += [f"{r.address}: ORPHANED: was assigned to {r.owner}" for r in report.orphaned]
    emit(args, "sriov", report, lines)
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
    lines += [f"drift: {line}" for line in report.net_drift]
    if not lines:
        lines = ["the lists agree with the host"]
    emit(args, "reconcile", report, lines)
    return 1 if report.failed else 0
