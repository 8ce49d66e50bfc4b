"""``hostdev watch``: follow PCI uevents until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from hostdev.cli.manage import manager
from hostdev.reports import WatchEvent

#: The signals that end a watch cleanly, between two batches.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_handler(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    """A signal handler that asks the watch to stop.

    It only sets ``stop``: the watch looks at it between batches (at least every
    poll interval), so a transaction under way ends before the command does.
    """
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    return handle


@contextmanager
def stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """Route SIGTERM and SIGINT to ``stop`` while inside (main thread only: elsewhere
    Python cannot take signals, and ``stop`` is the only way out)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = stop_handler(stop)
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cmd_watch(args: argparse.Namespace) -> int:
    """Reconcile, then act on PCI uevents until a stop signal."""
    mgr = manager(args)
    stop = threading.Event()

    def emit(event: WatchEvent) -> None:
        from hostdev.cli.documents import WatchOutput

        line = WatchOutput.model_validate(dict(event)).model_dump_json(by_alias=True)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    with stopping_on_signals(stop):
        mgr.watch(callback=emit if args.json else None, stop=stop)
    return 0
