"""One line for any error: what failed (the file or option), why, and the fix.

:class:`CLIError` is a user-facing error (printed without a traceback); :func:`describe_error` turns any
exception into that one line.  Used by the ``medadv`` command line (:mod:`medadv_lib.cli`) and by the course
runner's data step (:mod:`medadv_lib.course.runner`), so it lives below both.
"""
from __future__ import annotations

import errno
import os
import traceback
import urllib.error
from pathlib import Path

DEBUG_ENV = "MEDADV_DEBUG"
"""Set to 1 to get the full traceback of an unexpected error instead of the one-line message."""


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


_OS_HINTS = {
    errno.EACCES: "choose a location you can read and write, or fix its permissions",
    errno.EPERM: "choose a location you can read and write, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose another folder (e.g. --out)",
    errno.ENOSPC: "the disk is full: free some space or choose a folder on another disk (e.g. --out)",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another folder",
    errno.EISDIR: "this is a folder: pass a file",
    errno.ENOTDIR: "a part of this path is a file, not a folder: fix the path",
    errno.ENOENT: "check the path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
}


def describe_error(exc: BaseException) -> str:
    """One line for any exception: what failed (file or option), why, and the fix."""
    if isinstance(exc, urllib.error.URLError) or isinstance(exc, (ConnectionError, TimeoutError)):
        reason = getattr(exc, "reason", None) or exc
        return _one_line(f"network error ({reason}): this step downloads from the internet; check the connection, "
                         "or work offline (random initialisation without --weights; data: README, 'Data')")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return _one_line(f"out of memory ({exc}): use a smaller --batch-size, --image-size or --limit, "
                         "or --device cpu")
    if isinstance(exc, OSError) and exc.errno in _OS_HINTS:
        where = exc.filename if exc.filename is not None else ""
        return _one_line(f"{where}: {exc.strerror}; {_OS_HINTS[exc.errno]}" if where else
                         f"{exc.strerror or exc}; {_OS_HINTS[exc.errno]}")
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if f"{os.sep}medadv_lib{os.sep}" in f.filename]
    raised_by_us = bool(tb) and bool(ours) and ours[-1] is tb[-1]
    designed = isinstance(exc, (CLIError, ValueError, RuntimeError, OSError, AssertionError)) or \
        any(c.__name__ == "DataBuildError" for c in type(exc).__mro__)
    if isinstance(exc, CLIError) or (designed and raised_by_us and str(exc)):
        return _one_line(str(exc))          # the library's own messages name the file or option and the fix
    where = ""
    if ours:
        rel = ours[-1].filename.rsplit(f"{os.sep}medadv_lib{os.sep}", 1)[-1].replace(os.sep, "/")
        where = f" at medadv_lib/{rel}:{ours[-1].lineno}"
    if tb and (not ours or ours[-1] is not tb[-1]):
        where += f" (raised in {Path(tb[-1].filename).name}:{tb[-1].lineno})"
    return _one_line(f"unexpected {type(exc).__name__}: {exc}{where}. This is a bug in medadv: rerun with "
                     f"{DEBUG_ENV}=1 for the traceback and report it")
