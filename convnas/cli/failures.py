"""One line for every failure the environment can cause: full and read-only disks, damaged
study databases, paths that are files, memory. The CLI prints it as
``convnas COMMAND: error: ...`` (exit code 2); ``--debug`` adds the traceback."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator

__all__ = ["KnownFailure", "StripTracebacks", "describe"]

RESUME = "a search can then be continued with --resume"


class KnownFailure:
    """Namespace of the messages (kept together so that the catalogue test can name them)."""

    DISK_FULL = "no space left on the device"
    READ_ONLY = "read-only file system"
    DAMAGED_DB = "the study database is damaged"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _os_error(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else "a file"
    code = exc.errno
    if code == errno.ENOSPC:
        return (
            f"{KnownFailure.DISK_FULL} while writing {name}: free some space or set "
            f"output.root on another disk; {RESUME}"
        )
    if code == errno.EROFS:
        return f"{KnownFailure.READ_ONLY}: cannot write {name}; choose a writable output.root/--out"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {name}; choose a directory you can write (output.root/--out)"
    if code == errno.ENAMETOOLONG:
        return f"file name too long: {name}; choose a shorter --name or output.root"
    if code in (errno.ENOTDIR, errno.EEXIST):
        return f"{name} exists and is not a directory; choose another path (output.root/--out)"
    if code == errno.EISDIR:
        return f"{name} is a directory, not a file"
    if code == errno.ENOENT:
        return f"no such file or directory: {name}"
    return f"{exc.strerror or exc}: {name}"


_DB_MESSAGES = (
    (
        "malformed",
        f"{KnownFailure.DAMAGED_DB} (SQLite: database disk image is malformed); restore "
        "study.db from a backup, or start a new run (another --name)",
    ),
    (
        "file is not a database",
        f"{KnownFailure.DAMAGED_DB} (SQLite: file is not a database); restore study.db from a "
        "backup, or start a new run (another --name)",
    ),
    (
        "database or disk is full",
        f"{KnownFailure.DISK_FULL} for the study database (SQLite: database or disk is full); "
        f"free some space; {RESUME}",
    ),
    (
        "readonly database",
        f"{KnownFailure.READ_ONLY}: the study database cannot be written (SQLite: attempt to "
        "write a readonly database); choose a writable output.root",
    ),
    (
        "unable to open database file",
        "the study database cannot be opened (SQLite: unable to open database file); check "
        "that its directory exists and is writable",
    ),
    (
        "database is locked",
        "the study database stayed locked by another process; retry, or use another run name",
    ),
)


def describe(exc: BaseException) -> str | None:
    """A one-line message naming the problem and the fix, or None for an unknown failure."""
    for link in _chain(exc):
        text = str(link)
        for needle, message in _DB_MESSAGES:
            if needle in text:
                return message
    for link in _chain(exc):
        if isinstance(link, OSError):
            return _os_error(link)
        if isinstance(link, MemoryError) or "can't allocate memory" in str(link):
            return (
                "out of memory; make the space smaller, lower batch sizes, or use a machine "
                "with more memory"
            )
    return None


class StripTracebacks(logging.Filter):
    """Log records keep their message but lose their traceback (``--debug`` keeps them);
    records about a KeyboardInterrupt are dropped: the CLI reports the interrupt itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            if issubclass(record.exc_info[0], KeyboardInterrupt):
                return False
            record.exc_info, record.exc_text = None, None
        return "KeyboardInterrupt" not in record.getMessage()
