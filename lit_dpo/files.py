"""Reports written whole or not at all: to a temporary file beside the target, then renamed.

A crash, a SIGKILL or a full disk mid-write leaves the previous file or folder (or none), never
half of one: files through a temporary file and ``os.replace``, folders through ``replace_folder``.

A temporary file or folder is named ``.<target name>-lit-dpo-partial-<random>`` and stays locked
(``flock``) by the process writing it. A process killed with SIGKILL leaves it behind, unlocked:
``remove_stale_staging`` finds such leftovers by their name and removes those no process holds.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lit_dpo.errors import LitDPOError

# Set only by tests (tests/test_faults_kill.py): ``<file name pattern>[@<n>]`` makes the process
# SIGKILL itself when its n-th (default first) write of a file or folder whose name matches is
# complete but not yet renamed into place: the worst moment for a crash.
KILL_POINT_VARIABLE = "LIT_DPO_TEST_KILL_BEFORE_RENAME"
_kill_point_hits: dict[str, int] = {}

# in the name of every temporary file or folder lit-dpo writes beside a target
STAGING_MARK = "-lit-dpo-partial-"
# ``.<name>-lit-dpo-partial-<8 random characters of tempfile>[suffix]``
_STAGING_NAME = re.compile(r"\..+" + re.escape(STAGING_MARK) + r"[a-z0-9_]{8}(\.[^.]*)?")
# a leftover younger than this may be one another process created and has not yet locked
_STAGING_GRACE_S = 2.0


def staging_prefix(target: str | Path) -> str:
    """The name every temporary file or folder written for ``target`` starts with."""
    return f".{Path(target).name}{STAGING_MARK}"


def _lock(path: str | Path, blocking: bool = True) -> int | None:
    """An open descriptor of ``path`` (a file or a folder) holding its exclusive ``flock``; None
    where another process holds it (``blocking=False``) or the file system cannot lock it (some
    network file systems lock only files open for writing). The lock goes with the process,
    however it ends."""
    handle = os.open(path, os.O_RDONLY)
    if not _hold(handle, blocking):
        os.close(handle)
        return None
    return handle


def _hold(handle: int, blocking: bool = True) -> bool:
    """Take the exclusive ``flock`` of an open file; False where it is taken or cannot be: the
    lock only tells leftovers from files in use, so a write goes on without it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=staging_prefix(path), suffix=path.suffix,
                                       dir=path.parent)
    # held until the rename: the file is in use, not a leftover (remove_stale_staging)
    _hold(handle)
    try:
        with out_of_space_named(path, Path(staging)):
            write(Path(staging))
        kill_point(path)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
        os.close(handle)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    return write_atomically(path, lambda staging: staging.write_text(text, encoding="utf-8"))


def write_texts_atomically(texts: dict[Path, str]) -> list[Path]:
    """Write several files of one report whole or not at all, as a set: every text goes to its
    temporary file first and only then is each renamed into place, so that a full disk leaves
    every earlier file as it was (``DiskFullError`` names the folder and the bytes the set
    needs), not a new file beside old ones.

    Args:
        texts: {path: UTF-8 text}; the paths may be in different folders of one file system.

    Returns:
        The paths written, in the order given.
    """
    encoded = {Path(path): text.encode("utf-8") for path, text in texts.items()}
    needed = sum(len(data) for data in encoded.values())
    staged: dict[Path, tuple[int, str]] = {}
    try:
        for path, data in encoded.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, staging = tempfile.mkstemp(prefix=staging_prefix(path), suffix=path.suffix,
                                               dir=path.parent)
            _hold(handle)
            staged[path] = (handle, staging)
            with out_of_space_named(path, Path(staging), needed):
                with open(staging, "wb") as out:
                    out.write(data)
        for path, (_, staging) in staged.items():
            kill_point(path)
            os.replace(staging, path)
    finally:
        for handle, staging in staged.values():
            if os.path.exists(staging):
                os.unlink(staging)
            os.close(handle)
    return list(encoded)


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


@contextmanager
def staged_folder(target: str | Path, expected: int | None = None) -> Iterator[Path]:
    """A new temporary folder beside ``target`` to write into; when the block ends it replaces
    ``target`` (``replace_folder``). On an error, or a full disk (``DiskFullError``, which says
    ``expected`` bytes are needed if given), ``target`` is left as it was and the temporary folder
    removed."""
    with staging_folder(target) as staging:
        with out_of_space_named(Path(target), staging, expected):
            yield staging
        sync_folder(staging)
        replace_folder(staging, target)


@contextmanager
def staging_folder(target: str | Path) -> Iterator[Path]:
    """A new, locked temporary folder beside ``target``, removed when the block ends unless the
    block renamed it (into ``target``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(target), dir=target.parent))
    handle = _lock(staging)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if handle is not None:
            os.close(handle)


def sync_folder(folder: str | Path) -> None:
    """Flush every file under ``folder``, and the folder, to the disk: renamed into place after
    this, it holds whole files after a power cut as after a crash."""
    for path in [*Path(folder).rglob("*"), Path(folder)]:
        if path.is_symlink():
            continue
        handle = os.open(path, os.O_RDONLY)
        try:
            os.fsync(handle)
        except OSError:
            if not path.is_dir():  # some file systems cannot sync a folder; a file they can
                raise
        finally:
            os.close(handle)


def remove_stale_staging(folder: str | Path) -> list[str]:
    """Remove the temporary files and folders that killed lit-dpo runs left in ``folder`` (named
    by ``staging_prefix``, older than two seconds, locked by no process); the names removed.

    A file or folder still being written is locked by its writer and kept.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if not _STAGING_NAME.fullmatch(path.name) or path.is_symlink():
            continue
        try:
            if time.time() - path.stat().st_mtime < _STAGING_GRACE_S:
                continue
            handle = _lock(path, blocking=False)
        except OSError:  # removed by another process first, or not ours to open
            continue
        if handle is None:
            continue  # being written now (or no lock to tell: left alone)
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path.name)
        except FileNotFoundError:
            pass
        finally:
            os.close(handle)
    return removed


def clear_leftovers(folders: Iterable[str | Path]) -> str | None:
    """``remove_stale_staging`` in each folder; prints (to stderr) and returns one line saying
    what was removed, or None when nothing was."""
    unique = dict.fromkeys(Path(folder).absolute() for folder in folders)
    removed = {folder: remove_stale_staging(folder) for folder in unique}
    line = removed_staging_line(removed)
    if line:
        print(line, file=sys.stderr, flush=True)
    return line


def removed_staging_line(removed: dict[Path, list[str]]) -> str | None:
    """One line saying which leftovers ``remove_stale_staging`` removed where; None if none."""
    removed = {folder: names for folder, names in removed.items() if names}
    if not removed:
        return None
    count = sum(len(names) for names in removed.values())
    where = "; ".join(f"{folder}: {', '.join(names)}" for folder, names in removed.items())
    return f"lit-dpo: removed {count} unfinished file(s) left by a killed run ({where})"


def replace_folder(staging: str | Path, target: str | Path) -> Path:
    """Put the complete folder ``staging`` at ``target`` (same file system), replacing any folder
    there, so that ``target`` names the old folder or the new one at every moment, never none.

    Where the system can swap two folders in one step (Linux) it does; elsewhere the old folder is
    first moved aside to ``.<name>-old`` (``recover_folder`` puts it back after a crash between
    the two renames). The old folder is removed afterwards.
    """
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


# errors a write gets when the folder's file system is full (disk or quota)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(LitDPOError):
    """A write ran out of space; the message names the folder, what was needed and what is free."""


def is_out_of_space(error: BaseException) -> bool:
    """An error caused, at any depth, by a full file system (torch and safetensors wrap it in
    their own errors, or keep only its message)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _NO_SPACE:
            return True
        if "No space left on device" in str(seen) or "Disk quota exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def size_of(path: Path) -> int:
    """Bytes in a file, or in every file under a folder (0 if neither exists)."""
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def human_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``; binary units, as ``df -h`` prints them."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def out_of_space_message(target: Path, written: int, expected: int | None = None) -> str:
    """One line: which folder is full, how much the write needed and how much is free."""
    folder = target.parent
    free = shutil.disk_usage(folder).free if folder.exists() else 0
    if expected is not None and expected > written:
        needed = f"needs about {human_bytes(expected)}"
    elif written:
        needed = f"needs more than the {human_bytes(written)} written before the disk filled"
    else:
        needed = "needs more space than is free"
    return (
        f"no space left in {folder} for {target.name}: it {needed}, {human_bytes(free)} free; "
        f"the previous {target.name} (if any) is kept. Free space there or point the output "
        "elsewhere"
    )


@contextmanager
def out_of_space_named(target: Path, staging: Path, expected: int | None = None) -> Iterator[None]:
    """Turn a full disk during the block (which writes ``staging`` for ``target``) into one
    ``DiskFullError`` line; the caller removes ``staging``."""
    try:
        yield
    except Exception as error:
        if not is_out_of_space(error):
            raise
        written = size_of(staging)
        raise DiskFullError(out_of_space_message(Path(target), written, expected)) from error


def unwritable_problem(folder: str | Path, flag: str) -> str | None:
    """Why outputs cannot go to ``folder`` (named by ``flag``), or None: tried by creating and
    removing a file in it, or in its nearest existing parent if it does not exist yet, so that a
    read-only mount or a folder of another user is refused before a model loads."""
    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{flag} {folder}: {existing} is a file, not a folder"
    try:
        handle, probe = tempfile.mkstemp(prefix=".lit-dpo-write-check-", dir=existing)
    except OSError as error:
        return f"{flag} {folder} is not writable ({error.strerror}); pick a folder you can write"
    os.close(handle)
    os.unlink(probe)
    return None
