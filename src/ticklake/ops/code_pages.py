"""Dropping the embedded engine's start-up-only code from this process's resident memory.

chdb's library (``_chdb.abi3.so``, 555 MB) is mapped from disk; opening the engine, migrating and
the first queries touch ~205 MB of it, of which the platform's steady work uses ~75 MB. The rest
stays resident (RssFile) though it is never run again. ``MADV_DONTNEED`` on the library's read-only
mappings unmaps their pages from this process: they stay in the page cache (clean, reclaimable, not
counted in the process's RSS), and a page that is run again comes back on a minor fault (no disk
read while it is cached). Only mappings holding no page of the process's own are touched (no
``Anonymous`` page: never the relocated read-only data, whose pages are private copies that
``MADV_DONTNEED`` would throw away). ``MADV_PAGEOUT`` would be the finer tool, but it leaves the
pages where they are on the kernels measured (6.18, RssFile unchanged).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_MADV_DONTNEED = 4


def _readonly_clean_mappings(suffix: str) -> list[tuple[int, int]]:
    """(start, end) of each mapping of a file whose name ends with ``suffix``, not writable, holding
    no anonymous (copied-on-write) page."""
    found: list[list[int]] = []
    current: list[int] | None = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                current = None
                if len(fields) >= 6 and fields[5].endswith(suffix) and "w" not in fields[1]:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    current = [start, end, 0]
                    found.append(current)
            elif current is not None and fields[0] == "Anonymous:":
                current[2] = int(fields[1])
    return [(start, end) for start, end, anonymous in found if anonymous == 0]


def release_code_pages(suffix: str = "_chdb.abi3.so") -> int:
    """Unmap the resident pages of the library's read-only, never-written mappings from this process;
    returns the bytes of address space advised (0 where this cannot be done: not Linux, no such library)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        advised = 0
        for start, end in _readonly_clean_mappings(suffix):
            if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
                advised += end - start
        return advised
    except OSError:
        log.debug("cannot release the library's code pages", exc_info=True)
        return 0
