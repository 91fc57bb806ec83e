"""Keeping wasmtime's trap handlers installed.

wasmtime turns a guest's fault (``unreachable``, out-of-bounds) into a trap through its
own SIGILL/SIGSEGV/SIGBUS/SIGFPE handlers, installed when the first engine is made. A
handler installed *after* them that does not hand the fault back untouched breaks
that: Python's ``faulthandler.enable()`` (which ``ray.init()`` calls) does exactly this,
and the next trapping module then kills the whole process with SIGILL — one bad module
taking a shard down. So the handlers are saved once wasmtime has installed them
(:func:`capture`), and put back (:func:`ensure`) whenever a host is made and after
``ray.init``. Linux (glibc) only; elsewhere both are no-ops.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_SIGNALS = (signal.SIGILL, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE)
_SIZE = 512  # larger than any libc's struct sigaction: an opaque buffer libc fills and reads
_saved: dict[int, bytes] = {}
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _current(sig: int) -> bytes:
    assert _libc is not None
    buf = ctypes.create_string_buffer(_SIZE)
    if _libc.sigaction(int(sig), None, buf) != 0:
        raise OSError(ctypes.get_errno(), f"sigaction({sig}) failed")
    return buf.raw


def capture() -> None:
    """Saves the fault handlers as they are now (call right after making an engine)."""
    if _libc is None or _saved:
        return
    for sig in _SIGNALS:
        _saved[int(sig)] = _current(sig)


def ensure() -> bool:
    """Puts the saved handlers back where something replaced them; True if it had to."""
    if _libc is None or not _saved:
        return False
    changed = False
    for sig, want in _saved.items():
        if _current(sig) != want:
            buf = ctypes.create_string_buffer(want, _SIZE)
            if _libc.sigaction(sig, buf, None) != 0:
                raise OSError(ctypes.get_errno(), f"sigaction({sig}) failed")
            changed = True
    return changed
