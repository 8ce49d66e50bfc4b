"""Commands about persistent wishes: ``boot`` applies them, ``wishes`` lists them."""

from __future__ import annotations

import argparse
import sys

from hostdev.cli.manage import manager
from hostdev.reports import PersistentReport
from hostdev.state.wishes import DeviceIdentity


def report_lines(report: PersistentReport) -> list[str]:
    """One line per wish, then a summary."""
    lines = [f"{o.address}: {o.wish}: done: {o.detail}" for o in report.done]
    lines += [f"{o.address}: {o.wish}: already so: {o.detail}" for o in report.already]
    lines += [f"{o.address}: {o.wish}: not present: {o.detail} (applied when it appears)"
              for o in report.missing]
    lines += [f"{o.address}: {o.wish}: FAILED: {o.detail}" for o in report.failed]
    done, already, missing, failed = counts = (len(report.done), len(report.already),
                                               len(report.missing), len(report.failed))
    if not any(counts):
        lines.append("no persistent wish to apply")
    elif not report.changed and report.ok:
        lines.append("nothing to do: the host already matches every wish it can")
    else:
        lines.append(f"{done} applied, {already} already so, {missing} not present,"
                     f" {failed} failed")
    return lines


def cmd_boot(args: argparse.Namespace) -> int:
    """Apply the persistent wishes; exit 1 when one could not be applied.

    A device that is not present is not a failure: the udev rule applies its
    wish when it appears.
    """
    report = manager(args).apply_persistent(only=args.only,
                                            vf_counts_only=args.vf_counts_only)
    if args.json:
        from hostdev.cli.documents import BootOutput

        document = BootOutput.model_validate(dict(report))
        sys.stdout.write(document.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        for line in report_lines(report):
            print(line)
    return 0 if report.ok else 1


def cmd_wishes(args: argparse.Namespace) -> int:
    """Print the persistent wishes."""
    wishes = manager(args).wishes()
    if args.json:
        from hostdev.cli.documents import WishesOutput

        document = WishesOutput.model_validate(dict(wishes))
        sys.stdout.write(document.model_dump_json(by_alias=True, indent=2) + "\n")
        return 0
    for vf in wishes.sriov:
        print(f"{vf.device.address}: {vf.num_vfs} VFs ({_named(vf.device)})")
    for detach in wishes.detach:
        print(f"{detach.device.address}: on {detach.stub_driver} ({_named(detach.device)})")
    if not wishes.sriov and not wishes.detach:
        print("no persistent wishes")
    return 0


def _named(device: DeviceIdentity) -> str:
    serial = f", serial {device.serial}" if device.serial else ""
    return f"{device.vendor:04x}:{device.device:04x}{serial}"
