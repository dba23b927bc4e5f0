"""SQLite's memory statistics turned off, in each SQLite library a process uses.

Each SQLite library (the system's, which Python's ``sqlite3`` is linked to, and apsw's own)
keeps a count of the memory it has allocated, for ``sqlite3_memory_used`` and
``sqlite3_status``, under one global mutex that every allocation and free takes
(``SQLITE_DEFAULT_MEMSTATUS=1`` in both builds). A statement allocates for most values it
makes, so with two threads in one library at once they queue on that mutex: two threads each
making 900,000 short strings took 7.4 s against 2.0 s with the statistics off, and one
thread alone 2.3 s against 1.9 s (bench/RESULTS.md, thirty-second round). cdrgate reads none
of these statistics, and SQLite's soft heap limit, the one feature that needs them, is not
used.

SQLite accepts the setting only while it is not initialised, and both libraries initialise
on import. So it is shut down, configured and initialised again, which is allowed only while
no connection of that library is open. ``memory_used`` tells: a connection holds memory from
its opening (its lookaside buffers) to its closing, and with no connection open the count is
0. A library with memory in use is left as it is. This runs where a process starts (the CLI's
``main``, a spawned worker or import child before its first connection), while it has one
thread.

The system library has no Python API for it: its functions are called through ``ctypes``,
looked up from the ``_sqlite3`` extension (so they are those of the library it is linked to,
checked by its version), on platforms where calling the variadic ``sqlite3_config`` as a
plain function passes its arguments right (not Apple's arm64). Where any of that does not
hold, the statistics stay on: slower where threads meet, nothing else.
"""

from __future__ import annotations

import ctypes
import os
import sys
from types import ModuleType

_SQLITE_OK = 0
_SQLITE_CONFIG_MEMSTATUS = 9
_done: set[str] = set()


def statistics_off() -> None:
    """Both libraries' statistics off, the system's and (when it is installed) apsw's."""
    system_statistics_off()
    try:
        import apsw
    except ImportError:
        return
    apsw_statistics_off(apsw)


def system_statistics_off() -> bool:
    """The statistics off in the SQLite that Python's ``sqlite3`` uses; whether they are."""
    if "system" in _done:
        return True
    library = _system_library()
    if library is None or library.sqlite3_memory_used() != 0:
        return False
    if library.sqlite3_shutdown() != _SQLITE_OK:
        return False
    configured = bool(
        library.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == _SQLITE_OK
    )
    library.sqlite3_initialize()
    if configured:
        _done.add("system")
    return configured


def apsw_statistics_off(apsw: ModuleType) -> bool:
    """The statistics off in apsw's SQLite; whether they are."""
    if "apsw" in _done:
        return True
    if apsw.memory_used() != 0:
        return False
    apsw.shutdown()
    try:
        apsw.config(apsw.SQLITE_CONFIG_MEMSTATUS, 0)
    except apsw.Error:
        return False
    finally:
        apsw.initialize()
    _done.add("apsw")
    return True


def _system_library() -> ctypes.CDLL | None:
    # os.uname, not the platform module: this runs in every process's start-up.
    if sys.platform == "darwin" and os.uname().machine == "arm64":
        return None
    try:
        # The extension alone, not the sqlite3 package (datetime and more): this runs in
        # every command's start-up, ``--version`` too.
        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)
        library.sqlite3_libversion.restype = ctypes.c_char_p
        library.sqlite3_memory_used.restype = ctypes.c_int64
        version = library.sqlite3_libversion()
        for name in ("sqlite3_shutdown", "sqlite3_config", "sqlite3_initialize"):
            getattr(library, name)
    except (ImportError, OSError, AttributeError):
        return None
    return library if version == _sqlite3.sqlite_version.encode() else None
