"""Shared fixtures: ``host`` (a small fake host with a manager over it)."""

from tests.smallhost import host

__all__ = ["host"]
