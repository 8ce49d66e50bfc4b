"""The ``--mac``/``--vlan``... options of verbs that give a NIC VF to a guest.

Imported while the parser is built, by every command (``list`` included): it
needs nothing but argparse until a command reads the options.
"""

from __future__ import annotations

import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hostdev.state.records import VfNetConfig

_SWITCH = {"on": True, "off": False}


def add_net_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the VF network options (all optional: unset leaves a setting as it is)."""
    group = parser.add_argument_group(
        "VF network settings", "set through the VF's PF while the owner holds it; the values"
        " they replace are given back at release")
    group.add_argument("--mac", metavar="MAC", help="administrative MAC address (unicast)")
    group.add_argument("--vlan", metavar="ID", help="VLAN id, 0-4095 (0: none)")
    group.add_argument("--qos", metavar="PRIO", help="VLAN priority, 0-7")
    group.add_argument("--spoofchk", choices=sorted(_SWITCH), help="MAC spoof checking")
    group.add_argument("--trust", choices=sorted(_SWITCH), help="trusted VF")
    group.add_argument("--link-state", choices=["auto", "enable", "disable"],
                       help="the VF's link state")


def net_config_from_args(args: argparse.Namespace) -> VfNetConfig | None:
    """The options as a VfNetConfig, or None when none was given; BadInput if bad."""
    from hostdev.errors import BadInput
    from hostdev.state.records import VfNetConfig

    values: dict[str, object] = {}
    if getattr(args, "mac", None) is not None:
        values["mac"] = args.mac
    for key in ("vlan", "qos"):
        text = getattr(args, key, None)
        if text is not None:
            try:
                values[key] = int(text, 10)
            except ValueError:
                raise BadInput(f"invalid --{key} {text[:20]!r}: expected a number") from None
    for key in ("spoofchk", "trust"):
        text = getattr(args, key, None)
        if text is not None:
            values[key] = _SWITCH[text]
    if getattr(args, "link_state", None) is not None:
        values["link_state"] = args.link_state
    return VfNetConfig.model_validate(values) if values else None
