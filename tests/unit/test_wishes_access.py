"""Who may read the wishes file and who may change it, with the caller's uid faked
(pyfakefs then enforces permissions as for that user): a user reads root's
wishes, never another user's nor a file others could have written, and changes
only their own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from pyfakefs.fake_filesystem import FakeFilesystem
from pyfakefs.helpers import set_uid

from hostdev.address import PciAddress
from hostdev.errors import StateUnusable
from hostdev.state.wishes import DetachWish, DeviceIdentity, Wishes, WishStore

ROOT_UID = os.getuid()  # the real one (pyfakefs takes it as its first uid)
USER = 1000
NIC = PciAddress.parse("0000:04:00.0")


def _wishes() -> Wishes:
    wishes = Wishes()
    wishes.set_detach(DetachWish(device=DeviceIdentity(address=NIC, vendor=0x8086,
                                                       device=0x10D3)))
    return wishes


class Caller:
    """Switches the uid hostdev runs as: the fake file system's and ``os.geteuid``'s."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.uid = 0
        monkeypatch.setattr("os.geteuid", lambda: self.uid)

    def be(self, uid: int) -> None:
        set_uid(uid)
        self.uid = uid


@pytest.fixture
def caller(fs: FakeFilesystem, monkeypatch: pytest.MonkeyPatch) -> Iterator[Caller]:
    """Root's /etc/hostdev (0755) with its wishes.json (0644), the caller still root."""
    who = Caller(monkeypatch)
    who.be(0)
    WishStore("/etc/hostdev").save(_wishes())
    try:
        yield who
    finally:
        set_uid(ROOT_UID)


def as_root(caller: Caller, change: Callable[[], object]) -> None:
    """Run ``change`` as root, then be the user again."""
    caller.be(0)
    change()
    caller.be(USER)


def test_user_reads_roots_wishes(caller: Caller) -> None:
    caller.be(USER)
    assert WishStore("/etc/hostdev").load() == _wishes()


def test_user_reads_own_file_in_roots_directory(caller: Caller) -> None:
    as_root(caller, lambda: os.chown("/etc/hostdev/wishes.json", USER, USER))
    assert WishStore("/etc/hostdev").load() == _wishes()


@pytest.mark.parametrize(("change", "message"), [
    (lambda: os.chown("/etc/hostdev/wishes.json", 1001, 1001),
     "wishes file /etc/hostdev/wishes.json is owned by uid 1001, not by root or by uid 1000"
     " running hostdev; use a directory of your own (--config-dir)"),
    (lambda: os.chown("/etc/hostdev", 1001, 1001),
     "configuration directory /etc/hostdev is owned by uid 1001, not by root or by uid 1000"),
    # (A writable file: tests/unit/test_wishes.py, as pyfakefs's fstat shows no file's mode.)
    (lambda: os.chmod("/etc/hostdev", 0o775),
     "configuration directory /etc/hostdev is writable by other users (mode 0775)"),
    (lambda: os.chmod("/etc/hostdev", 0o757),
     "configuration directory /etc/hostdev is writable by other users (mode 0757)"),
])
def test_user_refuses_a_file_others_could_have_written(
        caller: Caller, change: Callable[[], object], message: str) -> None:
    as_root(caller, change)
    with pytest.raises(StateUnusable) as refused:
        WishStore("/etc/hostdev").load()
    assert str(refused.value).startswith(message)


def test_user_refuses_a_symlink_to_roots_wishes(caller: Caller) -> None:
    """Even to a file the user would trust: a link is never followed."""
    def link() -> None:
        os.makedirs("/etc/linked", mode=0o755)
        os.symlink("/etc/hostdev/wishes.json", "/etc/linked/wishes.json")
        os.symlink("/etc/hostdev", "/etc/hostdev-link")

    as_root(caller, link)
    with pytest.raises(StateUnusable, match=r"^wishes file /etc/linked/wishes\.json is a"
                                            " symlink, not a regular file"):
        WishStore("/etc/linked").load()
    with pytest.raises(StateUnusable, match=r"^configuration directory /etc/hostdev-link is a"
                                            " symlink, not a plain directory"):
        WishStore("/etc/hostdev-link").load()


def test_root_still_refuses_a_users_file(caller: Caller) -> None:
    os.chown("/etc/hostdev/wishes.json", USER, USER)
    with pytest.raises(StateUnusable, match=r"^wishes file /etc/hostdev/wishes\.json is owned"
                                            r" by uid 1000, not by uid 0 running hostdev;"):
        WishStore("/etc/hostdev").load()


@pytest.mark.parametrize(("path", "mode", "message"), [
    ("/etc/hostdev/wishes.json", 0o600,
     "wishes file /etc/hostdev/wishes.json cannot be opened: Permission denied;"
     " run hostdev as root"),
    ("/etc/hostdev", 0o700,
     "wishes file /etc/hostdev/wishes.json cannot be examined: Permission denied;"
     " run hostdev as root"),
    ("/etc", 0o700,
     "configuration directory /etc/hostdev cannot be examined: Permission denied;"
     " run hostdev as root, or pass a directory of your own (--config-dir)"),
])
def test_user_kept_out_is_told_to_run_as_root(caller: Caller, path: str, mode: int,
                                              message: str) -> None:
    as_root(caller, lambda: os.chmod(path, mode))
    with pytest.raises(StateUnusable) as refused:
        WishStore("/etc/hostdev").load()
    assert str(refused.value) == message


def test_changing_wants_the_callers_own_directory(caller: Caller) -> None:
    caller.be(USER)
    store = WishStore("/etc/hostdev")
    for load in (lambda: store.load(for_update=True), lambda: store.save(Wishes())):
        with pytest.raises(StateUnusable, match=r"^configuration directory /etc/hostdev is"
                                                r" owned by uid 0, not by uid 1000 running"):
            load()
    as_root(caller, lambda: os.chown("/etc/hostdev", USER, USER))
    with pytest.raises(StateUnusable, match=r"^wishes file /etc/hostdev/wishes\.json is owned"
                                            r" by uid 0, not by uid 1000 running"):
        store.load(for_update=True)
    assert Wishes.model_validate_json(store.path.read_bytes()) == _wishes()
