"""The records the manager keeps: owners, caller specs, tracked devices.

Pure data (pydantic models): no file or sysfs access here. Every model here and
in the journal, state file and reports sets ``defer_build``: its validator is
built when first used, not at import, so a command builds only what it touches.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator

from hostdev.address import PciAddress, validate_driver_name
from hostdev.ids import Hex16

_OWNER_PART = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


def _set_override(value: str) -> str:
    if value == "(null)":
        raise ValueError("'(null)' is how the kernel shows no override, never an override")
    return value


#: A ``driver_override`` value as read from the kernel: one line, no NUL, not empty and
#: not ``(null)`` (an unset override is None). A damaged file holding anything else is
#: refused when read, not written back to the kernel.
OverrideValue = Annotated[str, Field(pattern=r"^[^\n\x00]+$"), AfterValidator(_set_override)]

#: The JSON keys a device's identity is read from: its name, and the one state
#: files and journals written by hostdev 0.1 used.
IDENTITY_KEYS = AliasChoices("identity", "generation")

def _owner_part(value: str) -> str:
    if not _OWNER_PART.fullmatch(value):
        raise ValueError(
            f"owner part {value[:40]!r} must be 1 to 256 printable characters"
        )
    return value


def _driver_name(value: str) -> str:
    try:
        return validate_driver_name(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError(f"{value[:40]!r} holds a character that is not printable (a"
                         " newline, a NUL...)")
    return value


def _kernel_driver(value: str) -> str:
    if "/" in value or value in (".", ".."):
        raise ValueError(f"driver name {value[:40]!r} is not a directory name")
    return _printable(value)


OwnerPart = Annotated[str, AfterValidator(_owner_part)]
DriverName = Annotated[str, AfterValidator(_driver_name)]
#: A driver the host had, as the kernel named it (a directory of
#: ``/sys/bus/pci/drivers``): one path component of printable characters. Looser than
#: :data:`DriverName` (a stub the caller chooses) because hostdev records whatever
#: driver the host had; but a file naming a driver no kernel can have (``../x``, a
#: newline) is damaged, and recovery must not move a device to "give it back" to it.
KernelDriverName = Annotated[str, Field(min_length=1, max_length=255),
                             AfterValidator(_kernel_driver)]
#: Text hostdev writes in its files and reads back into the lines it prints (an
#: operation's name, a sysfs path): no newline, NUL or other character that is not
#: printable, which would split or garble those lines.
PrintableText = Annotated[str, AfterValidator(_printable)]


class Owner(BaseModel):
    """Who holds an active device: a hypervisor driver and a domain (guest) name."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    driver: OwnerPart
    domain: OwnerPart

    def __str__(self) -> str:
        return f"driver {self.driver}, domain {self.domain}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        """Parse ``DRIVER/DOMAIN`` as the command line takes it."""
        from hostdev.errors import BadInput

        driver, sep, domain = text.partition("/")
        if not sep or not driver or not domain:
            raise BadInput(f"invalid owner {text[:60]!r}: expected DRIVER/DOMAIN, e.g. qemu/vm1")
        try:
            return cls(driver=driver, domain=domain)
        except ValueError as exc:
            raise BadInput(f"invalid owner {text[:60]!r}: {_first_error(exc)}") from None


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_NET_KEYS = ("mac", "vlan", "qos", "spoofchk", "trust", "link_state")
LinkState = Literal["auto", "enable", "disable"]


class VfNetValues(BaseModel):
    """Network settings of one VF as its PF keeps them; None: not concerned.

    What a record saves before changing them (any MAC the kernel reports,
    ``00:00:00:00:00:00`` included: a VF nobody configured)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    mac: Annotated[str, Field(pattern=_MAC.pattern)] | None = None
    vlan: Annotated[int, Field(ge=0, le=4095)] | None = None
    qos: Annotated[int, Field(ge=0, le=7)] | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState | None = None

    def fields(self) -> dict[str, Any]:
        """The fields that are set, in the order they are applied."""
        return {key: getattr(self, key) for key in _NET_KEYS if getattr(self, key) is not None}


class VfNetConfig(VfNetValues):
    """The network identity a guest's VF gets through its PF (libvirt's ``<mac>`` and
    ``<vlan>`` of an ``<interface type='hostdev'>``); None: leave it as it is.

    ``mac``: a unicast address, not all zeros; ``vlan`` 0-4095 (0: no VLAN) with
    ``qos`` 0-7; ``spoofchk``, ``trust``; ``link_state`` ``auto``, ``enable`` or
    ``disable``. A bad value raises :class:`~hostdev.errors.BadInput`.
    """

    @model_validator(mode="before")
    @classmethod
    def _check(cls, data: Any) -> Any:
        from hostdev.errors import BadInput

        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(_NET_KEYS))
        if unknown:
            raise BadInput(f"unknown VF network setting {unknown[0]!r}: expected one of"
                           f" {', '.join(_NET_KEYS)}")
        out = dict(data)
        mac = out.get("mac")
        if mac is not None:
            text = str(mac).strip().lower().replace("-", ":")
            if not isinstance(mac, str) or not _MAC.fullmatch(text):
                raise BadInput(f"invalid MAC address {str(mac)[:40]!r}: expected six hex"
                               " bytes such as 52:54:00:12:34:56")
            if int(text[:2], 16) & 1:
                raise BadInput(f"MAC address {text} is a multicast address: a VF needs a"
                               " unicast one (first byte even)")
            if text == "00:00:00:00:00:00":
                raise BadInput("MAC address 00:00:00:00:00:00 cannot be given to a VF:"
                               " leave mac unset to keep the current one")
            out["mac"] = text
        for key, top in (("vlan", 4095), ("qos", 7)):
            value = out.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= top):
                raise BadInput(f"invalid VF {key} {value!r}: expected an integer from 0"
                               f" to {top}")
        for key in ("spoofchk", "trust"):
            value = out.get(key)
            if value is not None and not isinstance(value, bool):
                raise BadInput(f"invalid VF {key} {value!r}: expected true or false")
        state = out.get("link_state")
        if state is not None and state not in ("auto", "enable", "disable"):
            raise BadInput(f"invalid VF link state {state!r}: expected auto, enable or"
                           " disable")
        if all(out.get(key) is None for key in _NET_KEYS):
            # It would still need a VF of a NIC PF, and change nothing: a mistake.
            raise BadInput("a VF network configuration sets nothing: give at least one of"
                           f" {', '.join(_NET_KEYS)}, or no configuration at all")
        return out


class HostdevSpec(BaseModel):
    """What a caller asks for one device: the address, managed or not, the stub, and
    for a NIC VF the network identity it gets while the owner holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    address: PciAddress
    #: Managed devices are detached to the stub by prepare and given back by reattach.
    managed: bool = True
    stub_driver: DriverName = "vfio-pci"
    #: Set through the VF's PF after the move; the values it replaces come back at
    #: reattach (and on rollback or recovery). ``update_active`` writes nothing: it
    #: keeps what an existing record says.
    net: VfNetConfig | None = None


class DeviceRecord(BaseModel):
    """One tracked function: enough to recognise it and to undo our own work."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    address: PciAddress
    owner: Owner | None = None
    managed: bool = True
    stub_driver: DriverName = "vfio-pci"
    #: The driver the device was on before we touched it. None: it had no driver,
    #: or it is not known (a device adopted on its stub by update_active); giving
    #: it back then lets the kernel choose.
    original_driver: KernelDriverName | None = None
    #: The ``driver_override`` it had before we touched it (None: unset).
    original_override: OverrideValue | None = None
    #: We moved it onto the stub, so giving it back means leaving the stub.
    unbind_from_stub: bool = False
    vendor: Hex16
    device: Hex16
    pf: PciAddress | None = None
    vf_index: Annotated[int, Field(ge=0, le=0xFFFF)] | None = None
    #: The device's kernel identity when recorded (:meth:`Sysfs.identity`): a function
    #: removed and re-created (VF count change, remove/rescan) gets a new one. Files
    #: written by hostdev 0.1 name it ``generation``, which is still read.
    identity: int | None = Field(default=None, validation_alias=IDENTITY_KEYS)
    #: The VF network settings we applied (what the VF should show while tracked).
    net: VfNetValues | None = None
    #: What those settings were before we applied them (given back at reattach).
    net_saved: VfNetValues | None = None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items = errors()
        if items:
            return str(items[0].get("msg", exc))
    return str(exc)
