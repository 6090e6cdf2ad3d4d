"""Files replaced whole: a reader (or a crash) sees the old file or the new one, never a part of either."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from latkit.errors import LatkitError


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed file in ``directory`` survive a power loss (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def nearest_existing(path: str | Path) -> Path:
    """The nearest parent of ``path`` that exists: where it would be created (``.`` at most for a relative path)."""
    return next(p for p in Path(path).parents if p.exists())


def check_out(path: str | Path, *, directory: bool = False) -> Path:
    """``path`` as a file (``directory``: a directory) that a long command writes at its end, checked before the work:
    a LatkitError where it is the other kind, a parent of it is a file, or the folder it goes into is read-only."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise LatkitError(f"cannot write {path}: it is a symlink to {os.readlink(path)}, which does not exist")
    if path.exists() and path.is_dir() != directory:
        raise LatkitError(f"cannot write {path}: it is a {'file' if directory else 'directory'}, not a "
                          f"{'directory' if directory else 'file'}")
    folder = path if directory and path.exists() else nearest_existing(path)
    if not folder.is_dir():
        raise LatkitError(f"cannot write {path}: {folder} is a file, not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LatkitError(f"cannot write {path}: {folder} is read-only")
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write to; when the block ends without an error the file is
    fsync'd, renamed over ``path`` and the directory fsync'd; otherwise it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp's 0600 would otherwise replace the file's own permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def temp_prefix(path: Path) -> str:
    """The name of this process's temporaries for ``path`` begin so (``.NAME.PID.``): a later writer can tell
    those of a killed writer, whose process is gone, from those of a live one."""
    return f".{path.name}.{os.getpid()}."


def remove_stale(path: Path) -> None:
    """Remove the temporaries (files or directories) that killed writers of ``path`` left beside it; those of live
    processes, this one's included, are theirs."""
    start = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(start) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        parts = name[len(start):].split(".")  # PID, mkstemp's random part (no dots), "tmp"
        pid = parts[0]
        if len(parts) == 3 and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale = path.parent / name
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (here; where that cannot be asked, it is assumed to)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # another user's process, or a number no process has: leave it
        return True
    return True


def created_mode(directory: bool = False) -> int:
    """The permissions a new file (or directory) gets: 0666 (0777) less the umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _mode_for(path: Path) -> int:
    """The permissions ``path`` has, or those a newly created file gets (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask: read from /proc (setting it to read it back is process-wide, racy with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Replace ``path`` with ``data``, atomically and durably."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
