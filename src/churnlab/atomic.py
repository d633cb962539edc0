"""Atomic outputs: every file and folder churnlab writes appears complete or not at all.

Files are written to a temporary sibling and renamed over the target (``os.replace`` is atomic on
one file system). Folders are written in full to a temporary sibling and then swapped in; a failed
write leaves the previous folder in place. Temporary siblings left by a crashed writer (whose
process is gone) are removed the next time anything is written beside them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from churnlab.errors import ChurnlabError

_TMP = ".tmp-"
_LINK = ".link-"


class OutputError(ChurnlabError):
    """An output path cannot be written."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _pid_of(name: str, marker: str) -> int | None:
    """The writer's process id encoded in a temporary name (``.<out>.tmp-<pid>-<rand>``)."""
    try:
        return int(name.split(marker, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def clean_stale(target: Path) -> list[Path]:
    """Remove temporary siblings of ``target`` left by writers that are no longer running.

    Parameters
    ----------
    target : Path
        An output file or folder.

    Returns
    -------
    list of Path
        What was removed.
    """
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    removed = []
    for marker in (_TMP, _LINK):
        for path in parent.glob(f".{target.name}{marker}*"):
            pid = _pid_of(path.name, marker)
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue
            _remove(path)
            removed.append(path)
    legacy = parent / f".{target.name}.old"  # the two-rename swap of earlier versions
    if legacy.exists() and not legacy.is_symlink():
        if not target.exists():
            os.replace(legacy, target)  # a crash between its two renames: restore it
        else:
            _remove(legacy)
            removed.append(legacy)
    return removed


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _temp_name(target: Path, marker: str) -> Path:
    return target.parent / f".{target.name}{marker}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def atomic_file(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target``.

    On an exception the temporary file is removed and ``target`` is left as it was.

    Parameters
    ----------
    target : Path or str
        The file to write.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _temp_name(target, _TMP)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def write_file(target: Path | str, write: Callable[[Path], None]) -> Path:
    """Write a file atomically: ``write(tmp_path)``, then rename over ``target``.

    Parameters
    ----------
    target : Path or str
        The file to write.
    write : callable
        Writes the content to the path it is given.
    """
    with atomic_file(target) as tmp:
        write(tmp)
    return Path(target)


def write_text(target: Path | str, text: str) -> Path:
    """Write a text file (UTF-8) atomically."""
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def publish_dir(tmp_dir: Path, target: Path) -> None:
    """Swap a fully written folder into place as ``target`` (earlier output survives a failure).

    Parameters
    ----------
    tmp_dir : Path
        The complete new content, a folder on the same file system as ``target``.
    target : Path
        The output folder.
    """
    target = Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(tmp_dir, target)
        shutil.rmtree(old)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_dir, target)


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success publish it as ``target``.

    On an exception the temporary folder is removed and ``target`` keeps its previous content.

    Parameters
    ----------
    target : Path or str
        The output folder.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    tmp = _temp_name(target, _TMP)
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
