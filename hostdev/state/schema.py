"""The schema of ``state.json`` (a pydantic model, imported by :mod:`hostdev.state.store`
only when a file is parsed or built, so that reading commands stay light)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hostdev.state.records import DeviceRecord


class StateFile(BaseModel):
    """What ``state.json`` holds."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    format: Literal["hostdev-state"] = "hostdev-state"
    version: Literal[1] = 1
    #: Id of the last transaction saved (matches a leftover intent journal if that
    #: transaction completed before the process died).
    last_transaction: str | None = None
    active: list[DeviceRecord] = Field(default_factory=list)
    inactive: list[DeviceRecord] = Field(default_factory=list)
