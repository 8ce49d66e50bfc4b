"""The records the manager keeps: owners, caller specs, tracked devices.

Pure data (pydantic models): no file or sysfs access here. Every model here and
in the journal, state file and reports sets ``defer_build``: its validator is
built when first used, not at import, so a command builds only what it touches.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

from hostdev.address import PciAddress, validate_driver_name
from hostdev.ids import Hex16

_OWNER_PART = re.compile(r"[^\x00-\x1f\x7f]{1,256}")


#: A ``driver_override`` value as read from the kernel: one line, no NUL (a damaged
#: file holding anything else is refused when read, not written back to the kernel).
OverrideValue = Annotated[str, Field(pattern=r"^[^\n\x00]*$")]

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


OwnerPart = Annotated[str, AfterValidator(_owner_part)]
DriverName = Annotated[str, AfterValidator(_driver_name)]


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


class HostdevSpec(BaseModel):
    """What a caller asks for one device: the address, managed or not, and the stub."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    address: PciAddress
    #: Managed devices are detached to the stub by prepare and given back by reattach.
    managed: bool = True
    stub_driver: DriverName = "vfio-pci"


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
    original_driver: str | None = None
    #: The ``driver_override`` it had before we touched it (None: unset).
    original_override: OverrideValue | None = None
    #: We moved it onto the stub, so giving it back means leaving the stub.
    unbind_from_stub: bool = False
    vendor: Hex16
    device: Hex16
    pf: PciAddress | None = None
    vf_index: int | None = None
    #: The device's kernel identity when recorded (:meth:`Sysfs.identity`): a function
    #: removed and re-created (VF count change, remove/rescan) gets a new one. Files
    #: written by hostdev 0.1 name it ``generation``, which is still read.
    identity: int | None = Field(default=None, validation_alias=IDENTITY_KEYS)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        items = errors()
        if items:
            return str(items[0].get("msg", exc))
    return str(exc)
