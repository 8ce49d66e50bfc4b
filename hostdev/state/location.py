"""Where the state directory is by default, as text: ``hostdev list`` asks whether
it exists before paying for :mod:`hostdev.state.store` (and pathlib)."""

from __future__ import annotations

import os


def default_state_dir_text(root: str | os.PathLike[str] = "/") -> str | None:
    """``/run/hostdev`` as root, else ``$XDG_RUNTIME_DIR/hostdev``, under ``root``;
    None when there is no default (not root, and no absolute ``XDG_RUNTIME_DIR``:
    :func:`hostdev.state.store.default_state_dir` says why).

    It names the same file as ``default_state_dir(root)`` (a test compares them);
    the text may differ in redundant slashes, which the system ignores.
    """
    if os.geteuid() == 0:
        base = "/run/hostdev"
    else:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if not runtime or not os.path.isabs(runtime):
            return None
        base = f"{runtime.rstrip('/')}/hostdev"
    text = os.fspath(root)
    double = text.startswith("//") and not text.startswith("///")  # POSIX: not "/"
    if text and not text.strip("/") and not double:
        return base  # the root is "/"
    head = text.rstrip("/") or ("/" if double else ".")
    return f"{head}{base}"  # base starts with a slash
