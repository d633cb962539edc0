"""Atomic files and versioned output folders: readers see the old or the new content, never less."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from churnlab import atomic


def _write(target: Path, text: str) -> None:
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text(text)
        (tmp / "b.txt").write_text(text * 2)


def _read(target: Path) -> tuple[str, str]:
    return (target / "a.txt").read_text(), (target / "b.txt").read_text()


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_folder_is_a_link_to_its_newest_version_and_one_previous_is_kept(tmp_path) -> None:
    out = tmp_path / "out"
    for text in ("one", "two", "three"):
        _write(out, text)
        assert _read(out) == (text, text * 2)
    assert out.is_symlink() and out.is_dir()
    assert not os.path.isabs(os.readlink(out))  # relative: the parent folder can be moved
    versions = [n for n in _hidden(tmp_path) if ".v" in n]
    assert len(versions) == 2  # current and previous
    assert [n for n in _hidden(tmp_path) if ".tmp-" in n or ".link-" in n] == []


def test_a_failed_write_leaves_the_previous_version(tmp_path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    with pytest.raises(RuntimeError), atomic.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("disk full")
    assert _read(out) == ("old", "oldold")
    assert [n for n in _hidden(tmp_path) if ".tmp-" in n] == []


def test_a_plain_folder_from_before_is_replaced_and_kept_as_the_previous_version(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("legacy")
    _write(out, "new")
    assert out.is_symlink() and _read(out) == ("new", "newnew")
    legacy = [p for p in tmp_path.iterdir() if p.name.endswith("-legacy")]
    assert len(legacy) == 1 and (legacy[0] / "a.txt").read_text() == "legacy"


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path) -> None:
    out = tmp_path / "out"
    _write(out, "x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / f".out.tmp-{dead}-abcd").mkdir()
    (tmp_path / f".out.link-{dead}-abcd").symlink_to("nowhere")
    live = tmp_path / f".out.tmp-{os.getppid()}-beef"  # the parent process is alive
    live.mkdir()
    removed = atomic.clean_stale(out)
    assert {p.name for p in removed} == {f".out.tmp-{dead}-abcd", f".out.link-{dead}-abcd"}
    assert live.exists() and _read(out) == ("x", "xx")


def test_a_lost_link_is_restored_to_the_newest_version(tmp_path) -> None:
    out = tmp_path / "out"
    _write(out, "one")
    _write(out, "two")
    out.unlink()  # what a crash between moving a plain folder aside and linking would leave
    atomic.clean_stale(out)
    assert _read(out) == ("two", "twotwo")


def test_the_two_rename_swap_of_earlier_versions_is_recovered(tmp_path) -> None:
    out = tmp_path / "out"
    old = tmp_path / ".out.old"
    old.mkdir()
    (old / "a.txt").write_text("saved")
    atomic.clean_stale(out)  # the crash happened after target -> .old, before tmp -> target
    assert (out / "a.txt").read_text() == "saved"


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path) -> None:
    target = tmp_path / "f.csv"
    atomic.write_text(target, "v1")
    with pytest.raises(ValueError), atomic.atomic_file(target) as tmp:
        tmp.write_text("partial")
        raise ValueError("boom")
    assert target.read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["f.csv"]


def test_a_file_in_the_way_of_an_output_folder_is_a_clear_error(tmp_path) -> None:
    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(atomic.OutputError, match="is a file"), atomic.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("x")
    assert out.read_text() == "not a folder"
