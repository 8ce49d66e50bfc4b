"""Commands about persistent wishes: ``boot`` applies them, ``wishes`` lists them."""

from __future__ import annotations

import argparse

from hostdev.cli.manage import emit, manager
from hostdev.reports import PersistentReport
from hostdev.state.wishes import DeviceIdentity, WishStore, default_config_dir


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
    emit(args, "boot", report, report_lines(report))
    return 0 if report.ok else 1


def cmd_wishes(args: argparse.Namespace) -> int:
    """Print the persistent wishes.

    They are read without a manager: listing them needs no state directory (a
    user without ``XDG_RUNTIME_DIR`` still reads root's), nor the host's tree.
    """
    directory = args.config_dir if args.config_dir is not None else default_config_dir(args.root)
    wishes = WishStore(directory).load()
    lines = [f"{vf.device.address}: {vf.num_vfs} VFs ({_named(vf.device)})"
             for vf in wishes.sriov]
    lines += [f"{detach.device.address}: on {detach.stub_driver} ({_named(detach.device)})"
              for detach in wishes.detach]
    emit(args, "wishes", wishes, lines or ["no persistent wishes"])
    return 0


def _named(device: DeviceIdentity) -> str:
    serial = f", serial {device.serial}" if device.serial else ""
    return f"{device.vendor:04x}:{device.device:04x}{serial}"
