"""The active and inactive lists in memory: records keyed by address.

Pure data, no file access. A :class:`RecordMap` knows whether it changed since
it was copied, so a transaction can tell in O(1) whether there is anything to
save, and the state file can reuse what it wrote for an unchanged list.
"""

from __future__ import annotations

from hostdev.address import PciAddress

# typing.TYPE_CHECKING, without importing typing at run time (cold start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hostdev.state.records import DeviceRecord
    from hostdev.state.schema import StateFile


class RecordMap(dict[PciAddress, "DeviceRecord"]):
    """A dict of records that knows whether, and where, it changed since it was copied.

    ``token`` is shared by a map and its unchanged copies and replaced on any
    change, so "is this list the one we loaded or saved?" costs O(1) instead of
    comparing thousands of records. ``origin`` is the token of the map it was
    copied from (inherited along copies) and ``dirty`` the addresses changed
    since: the state file is re-encoded for those records only.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token = object()
        self.origin = self.token
        self.dirty: set[PciAddress] = set()

    def clone(self) -> RecordMap:
        """A copy carrying the same token (and the same changes since ``origin``)."""
        twin = RecordMap(self)
        twin.token = self.token
        twin.origin = self.origin
        twin.dirty = set(self.dirty)
        return twin

    def rebase(self) -> None:
        """Make the current contents the ``origin`` (after they were encoded)."""
        self.origin = self.token
        self.dirty = set()

    def _changed(self, *keys: PciAddress) -> None:
        self.token = object()
        self.dirty.update(keys)

    def __setitem__(self, key: PciAddress, value: DeviceRecord) -> None:
        self._changed(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: PciAddress) -> None:
        self._changed(key)
        super().__delitem__(key)

    def pop(self, key: PciAddress, *default: Any) -> Any:
        """dict.pop, marking the map changed when something was removed."""
        if key in self:
            self._changed(key)
        return super().pop(key, *default)

    def popitem(self) -> tuple[PciAddress, DeviceRecord]:
        """dict.popitem, marking the map changed."""
        key, value = super().popitem()
        self._changed(key)
        return key, value

    def clear(self) -> None:
        """dict.clear, marking the map changed."""
        self._changed(*self)
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        """dict.update, marking the map changed."""
        incoming: dict[PciAddress, DeviceRecord] = dict(*args, **kwargs)
        self._changed(*incoming)
        super().update(incoming)

    def __ior__(self, other: Any) -> RecordMap:  # type: ignore[override,misc]
        self.update(other)
        return self

    def setdefault(self, key: PciAddress, default: Any = None) -> Any:
        """dict.setdefault, marking the map changed when it inserts."""
        if key not in self:
            self._changed(key)
        return super().setdefault(key, default)


class Lists:
    """The two lists in memory, keyed by address for constant-time lookups."""

    def __init__(self, active: dict[PciAddress, DeviceRecord] | None = None,
                 inactive: dict[PciAddress, DeviceRecord] | None = None) -> None:
        self.active: RecordMap = _as_map(active)
        self.inactive: RecordMap = _as_map(inactive)
        self.last_transaction: str | None = None

    @classmethod
    def from_file(cls, data: StateFile) -> Lists:
        """Index a loaded file."""
        lists = cls({r.address: r for r in data.active}, {r.address: r for r in data.inactive})
        lists.last_transaction = data.last_transaction
        return lists

    def to_file(self) -> StateFile:
        """The file form, each list sorted by address."""
        from hostdev.state.schema import StateFile

        return StateFile(
            last_transaction=self.last_transaction,
            active=[self.active[a] for a in sorted(self.active)],
            inactive=[self.inactive[a] for a in sorted(self.inactive)],
        )

    def copy(self) -> Lists:
        """A shallow copy (records are immutable) that remembers it is unchanged."""
        twin = Lists()
        twin.active, twin.inactive = self.active.clone(), self.inactive.clone()
        twin.last_transaction = self.last_transaction
        return twin

    def find(self, address: PciAddress) -> DeviceRecord | None:
        """The record of ``address`` in either list."""
        return self.active.get(address) or self.inactive.get(address)

    def drop(self, address: PciAddress) -> DeviceRecord | None:
        """Remove ``address`` from both lists; return what was there."""
        a: DeviceRecord | None = self.active.pop(address, None)
        i: DeviceRecord | None = self.inactive.pop(address, None)
        return a or i

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lists):
            return NotImplemented
        return self.active == other.active and self.inactive == other.inactive

    def same_as(self, other: Lists) -> bool:
        """Neither list changed since one was copied from the other (O(1))."""
        return (self.active.token is other.active.token
                and self.inactive.token is other.inactive.token
                and self.last_transaction == other.last_transaction)


def _as_map(records: dict[PciAddress, DeviceRecord] | None) -> RecordMap:
    if isinstance(records, RecordMap):
        return records
    return RecordMap(records or {})
