"""Atomic outputs: every file and folder churnlab writes appears complete or not at all.

Files are written to a temporary sibling and renamed over the target (``os.replace`` is atomic on
one file system). Folders cannot be swapped in one rename, so an output folder is a **versioned
folder behind a symbolic link**: ``out`` is a link to a hidden sibling ``.out.v<stamp>``; a new
version is written in full to a temporary sibling, renamed to its version name and published by
replacing the link, which is one atomic rename. A reader therefore always sees either the previous
complete version or the new one, never a missing or half-written folder, whatever step a crash
interrupts. The previous version is kept (a reader that resolved the old link can finish), older
ones are removed; temporary folders left by a crashed writer (whose process is gone) are removed
the next time anything is written beside them.

A plain folder written by an older churnlab is moved aside to a version name the first time it is
replaced (the one moment without a folder, once per output).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from churnlab.errors import ChurnlabError

_TMP = ".tmp-"
_VERSION = ".v"
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
    versions = _versions(target)
    if versions and not target.exists() and not target.is_symlink():
        # A crash while a plain folder was being moved aside: point at the newest version.
        link = _temp_name(target, _LINK)
        os.symlink(versions[-1].name, link)
        os.replace(link, target)
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


def _versions(target: Path) -> list[Path]:
    return sorted(
        (p for p in target.parent.glob(f".{target.name}{_VERSION}*") if p.is_dir()),
        key=lambda p: p.name,
    )


def publish_dir(tmp_dir: Path, target: Path) -> None:
    """Publish a fully written folder as the new version of ``target`` (see the module docstring).

    Parameters
    ----------
    tmp_dir : Path
        The complete new content, a folder on the same file system as ``target``.
    target : Path
        The output folder (a link to its current version after the call).

    Raises
    ------
    OutputError
        If ``target`` is a file.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} is a file, not an output folder: remove it or choose --out")
    stamp = f"{time.time_ns():020d}"
    version = target.parent / f".{target.name}{_VERSION}{stamp}"
    os.replace(tmp_dir, version)
    if target.exists() and not target.is_symlink():
        # A plain folder from before versioning: it becomes the previous version.
        os.replace(target, target.parent / f".{target.name}{_VERSION}{stamp[:-1]}0-legacy")
    link = _temp_name(target, _LINK)
    os.symlink(version.name, link)  # relative: the output folder can be moved as a whole
    os.replace(link, target)
    current = version.name
    keep = {current}
    older = [p for p in _versions(target) if p.name != current]
    if older:
        keep.add(older[-1].name)  # a reader may still be inside the previous version
    for p in _versions(target):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


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
