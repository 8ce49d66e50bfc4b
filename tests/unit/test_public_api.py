"""The public surface: ``from hostdev import X`` for every name callers need, nothing
listed that does not import, every report and error exported, every error pickles."""

from __future__ import annotations

import inspect
import pickle

import pytest

import hostdev
from hostdev import errors, reports
from hostdev.address import PciAddress

ADDR = PciAddress.parse("0000:3b:02.0")


@pytest.mark.parametrize("name", hostdev.__all__)
def test_every_listed_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from hostdev import {name}", namespace)  # the statement callers write
    assert namespace[name] is getattr(hostdev, name)


def test_dir_lists_the_lazy_names_too() -> None:
    assert set(hostdev.__all__) <= set(dir(hostdev))


def test_every_error_and_report_is_exported() -> None:
    error_classes = {n for n, v in vars(errors).items()
                     if inspect.isclass(v) and issubclass(v, errors.HostdevError)}
    report_classes = {n for n, v in vars(reports).items()
                      if inspect.isclass(v) and v.__module__ == reports.__name__}
    assert error_classes - set(hostdev.__all__) == set()
    assert report_classes - set(hostdev.__all__) == set()
    assert {"HostdevManager", "Owner", "HostdevSpec", "DeviceRecord", "PciAddress"} \
        <= set(hostdev.__all__)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hostdev.nope  # type: ignore[attr-defined]  # noqa: B018


def _samples() -> list[errors.HostdevError]:
    return [
        errors.HostdevError("plain", address=ADDR),
        errors.InvalidAddress("bad address"),
        errors.KernelRefused("refused", errno=16, path="sys/x", address=ADDR),
        errors.DeviceBusy("busy", address=ADDR, holders=[]),
        errors.WriteBlocked("blocked", address=ADDR, pid=42, path="sys/y"),
        errors.DeviceUsedByHost("used", address=ADDR, uses=[]),
        errors.StateWriteFailed("disk full", errno=28),
        errors.RestoreFailed("driverless", address=ADDR),
        errors.NotEnoughFreeVfs("too few", requested=2, candidates=3, free=[ADDR],
                                not_free={ADDR: "assigned: qemu/vm1"}),
        errors.DeviceNotFound.at(ADDR, "detach"),
    ]


@pytest.mark.parametrize("error", _samples(), ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_attributes(error: errors.HostdevError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.args == error.args
    assert vars(back) == vars(error)
    assert back.exit_code == error.exit_code


def test_every_error_is_in_the_tree_drawn_in_the_docstring() -> None:
    drawn = errors.__doc__ or ""
    for name, value in vars(errors).items():
        if inspect.isclass(value) and issubclass(value, errors.HostdevError):
            line = next((x for x in drawn.splitlines() if f" {name} " in f" {x} "), None)
            assert line is not None, f"{name} missing from the error tree"
            assert f" {value.exit_code} " in line, f"{name}: exit code {value.exit_code}"
