"""Writing a whole directory atomically: all of it appears, or none of it does.

The files are written into a temporary sibling of the target and the directory is then renamed
into place. Replacing an existing directory (``--force``) swaps the two with Linux's
``renameat2(RENAME_EXCHANGE)``, so readers see the old tree or the new one and nothing between;
where that call is missing, the old tree is first renamed aside (a short moment with no
directory, but never a half-written one). Any failure removes the temporary directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

from planner.errors import InputError
from planner.fileio import OutputError, check_writable, file_mode

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def check_target(out_dir: Path, force: bool, option: str = "--out") -> None:
    """Refuse an output directory before any work: not a directory or not writable
    (:func:`check_writable`), or not empty without force."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise InputError(str(out_dir), option, "directory exists and is not empty; pass --force to replace it")
    check_writable(out_dir, option, "tree")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ≥ 3.15 with glibc ≥ 2.28); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    # The modes open() and mkdir would give under the umask (scripts executable), as for any output.
    os.chmod(path, file_mode(executable=path.suffix == ".sh"))


def _install(tmp: Path, out_dir: Path, force: bool) -> None:
    if not out_dir.exists():
        try:
            os.rename(tmp, out_dir)
            return
        except OSError:
            pass  # created meanwhile: fall through to the checks below
    check_target(out_dir, force)
    if _exchange(tmp, out_dir):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old tree
        return
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except BaseException:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_tree(out_dir: Path, files: dict[str, str], force: bool = False) -> list[Path]:
    """Write ``files`` (relative path → text) as the directory ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    check_target(out_dir, force)
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise OutputError(None, str(out_dir), f"cannot write: {exc.strerror or exc}") from None
    try:
        for rel, text in files.items():
            _write_file(tmp / rel, text)
        os.chmod(tmp, file_mode(executable=True))  # mkdtemp creates 0700
        _fsync_dir(tmp)
        _install(tmp, out_dir.absolute(), force)
        _fsync_dir(parent)
    except OSError as exc:  # a full disk, say: the old tree (if any) is still in place
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(None, str(out_dir), f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out_dir / rel for rel in files]
