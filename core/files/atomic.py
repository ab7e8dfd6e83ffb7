"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The temporary file lies in a folder ``.<name>.<host>-<pid>.<random>.tmp`` beside the target, so a
write that a killed process left behind is recognisable: the next write of the same target
removes it (and says so), if the process that made it has ended; a folder of a process still
running (another torchrun rank, a second ``ctxseg`` writing the same cache file), or of
another machine sharing the folder, is left to its writer. The new file gets the mode a plain ``open()`` would give it under the umask,
not the owner-only 0600 of :func:`tempfile.mkstemp`, so a run directory shared with a
group stays readable.

A write that fails (no space left, permission denied, a read-only file system) is a
:class:`~ctxseg.errors.WriteError` naming the file, and Ctrl-C during one a
``KeyboardInterrupt`` that does: the command can then say what is intact instead of
printing a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from ctxseg.errors import CtxsegError, WriteError

__all__ = ["atomic_path", "check_output", "check_writable", "file_in_the_way"]


def file_in_the_way(folder: Path) -> Path | None:
    """``folder`` itself or the first of its parents that exists as a file (so no folder can be made there)."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


def check_output(out: Path, option: str, *inputs: Path) -> None:
    """CtxsegError unless the file path ``out`` (given as ``option``) can be written and replaces none of ``inputs``
    (a WriteError if its folder cannot be written in)."""
    if out.is_dir():
        raise CtxsegError(f"{out}: {option} is a folder; expected the path of the file to write")
    if (blocking := file_in_the_way(out.parent)) is not None:
        raise CtxsegError(f"{out}: {option}: {blocking} is an existing file; expected a folder for the file to write")
    if any(out.resolve() == path.resolve() for path in inputs):
        raise CtxsegError(f"{out}: {option} is an input file; ctxseg never overwrites an input")
    check_writable(out)


def check_writable(out: Path) -> None:
    """WriteError unless files can be made where ``out`` goes (in the nearest of its folders that exists):
    a read-only file system or a folder without permission is named before the work, not after it."""
    folder = next(p for p in (out.parent, *out.parent.parents) if os.path.isdir(p))
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        raise WriteError(out, *_fault(errno.EROFS if read_only else errno.EACCES, "", folder), "nothing was written")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The path lies in a private folder ``.<name>.<host>-<pid>.<random>.tmp``, which also catches
    the temporary files of a writer that makes its own (safetensors does). If the body raises,
    ``path`` is untouched and the folder removed; if the process dies, the next
    ``atomic_path(path)`` removes it.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp",
                                       dir=path.parent))
    except OSError as error:
        raise _write_error(path, error) from None
    tmp = folder / path.name
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise _write_error(path, error) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{path} was not written") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write_error(path: Path, error: OSError) -> WriteError:
    """The WriteError of ``error``, met writing ``path``: nothing replaced the file already there, if any."""
    kept = "; the file already there is unchanged" if os.path.exists(path) else ""
    return WriteError(path, *_fault(error.errno, error.strerror or str(error), path.parent), f"it was not written{kept}")


def _fault(code: int | None, description: str, folder: Path) -> tuple[str, str]:
    """Why a file could not be written in ``folder`` (errno ``code``), and what lets a second try succeed."""
    return {
        errno.ENOSPC: ("no space left on device", "free space"),
        errno.EDQUOT: ("disk quota exceeded", "free space"),
        errno.EROFS: ("read-only file system", f"make {folder} writable"),
        errno.EACCES: ("permission denied", f"make {folder} writable"),
        errno.EPERM: ("operation not permitted", f"make {folder} writable"),
    }.get(code, (description.lower(), "fix that"))


_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())
"""This machine's name as a temporary folder's name holds it."""
_WRITER = re.compile(r"(?:(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)\.)?[a-z0-9_]+")
"""What lies between ``.<name>.`` and ``.tmp`` in a temporary folder's name: the writer's
machine and process (absent from the folders earlier versions made) and mkdtemp's part."""


def _abandoned(middle: str) -> bool:
    """Whether the temporary folder named ``.<name>.<middle>.tmp`` is one of ``atomic_path``'s whose
    writer has ended: made on this machine by a process that is gone (or by an older ctxseg)."""
    match = _WRITER.fullmatch(middle)
    if match is None:
        return False
    if match["host"] is None:
        return True
    if match["host"] != _HOST:
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def _remove_stale(path: Path) -> None:
    """Remove the temporary folders (or files) of ``path`` that an earlier, killed write left."""
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        if not _abandoned(stale.name[len(prefix):-len(".tmp")]):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        warnings.warn(f"removed {stale}, left by an interrupted write of {path.name}", stacklevel=4)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask
