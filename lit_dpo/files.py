"""Reports written whole or not at all: to a temporary file beside the target, then renamed.

A crash, a SIGKILL or a full disk mid-write leaves the previous file or folder (or none), never
half of one: files through a temporary file and ``os.replace``, folders through ``replace_folder``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# Set only by tests (tests/test_faults_kill.py): ``<file name pattern>[@<n>]`` makes the process
# SIGKILL itself when its n-th (default first) write of a file or folder whose name matches is
# complete but not yet renamed into place: the worst moment for a crash.
KILL_POINT_VARIABLE = "LIT_DPO_TEST_KILL_BEFORE_RENAME"
_kill_point_hits: dict[str, int] = {}


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(Path(staging))
        kill_point(path)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    return write_atomically(path, lambda staging: staging.write_text(text, encoding="utf-8"))


# renameat2's flag (linux/fs.h): swap two existing paths in one step
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system cannot."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True) if name else None
    except OSError:
        libc = None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    return renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                     _RENAME_EXCHANGE) == 0


def replace_folder(staging: str | Path, target: str | Path) -> Path:
    """Put the complete folder ``staging`` at ``target`` (same file system), replacing any folder
    there, so that ``target`` names the old folder or the new one at every moment, never none.

    Where the system can swap two folders in one step (Linux) it does; elsewhere the old folder is
    first moved aside to ``.<name>-old`` (``recover_folder`` puts it back after a crash between
    the two renames). The old folder is removed afterwards.
    """
    import shutil

    staging, target = Path(staging), Path(target)
    kill_point(target)
    if not target.exists():
        staging.rename(target)
        return target
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # holds the old folder now
        return target
    retired = target.with_name(f".{target.name}-old")
    shutil.rmtree(retired, ignore_errors=True)
    target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
    return target


def recover_folder(target: str | Path) -> bool:
    """Put back the folder ``replace_folder`` moved aside if a crash left ``target`` without one;
    True if it did."""
    target = Path(target)
    retired = target.with_name(f".{target.name}-old")
    if target.exists() or not retired.is_dir():
        return False
    retired.rename(target)
    return True


def save_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write_atomically``, with the data flushed to the disk before the rename, so that after a
    power cut as after a crash ``path`` holds the old bytes or the new ones (for checkpoints)."""

    def write_and_sync(staging: Path) -> None:
        write(staging)
        with open(staging, "rb") as written:
            os.fsync(written.fileno())

    return write_atomically(path, write_and_sync)


def kill_point(target: str | Path) -> None:
    """SIGKILL this process here if ``$LIT_DPO_TEST_KILL_BEFORE_RENAME`` names ``target`` (tests
    only; nothing happens without the variable)."""
    setting = os.environ.get(KILL_POINT_VARIABLE)
    if not setting:
        return
    import fnmatch
    import signal

    pattern, _, nth = setting.partition("@")
    if not fnmatch.fnmatch(Path(target).name, pattern):
        return
    _kill_point_hits[pattern] = _kill_point_hits.get(pattern, 0) + 1
    if _kill_point_hits[pattern] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
