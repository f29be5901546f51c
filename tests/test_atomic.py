"""Atomic outputs: complete or absent, leftovers cleaned, and as readable as plain files."""

from __future__ import annotations

import os
import stat

import pytest

from gptpipe.atomic import atomic_path, write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_outputs_get_the_modes_of_plain_files(tmp_path, umask_022):
    write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "d", is_dir=True) as d:
        (d / "f").write_text("y")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_a_failed_write_leaves_nothing_and_keeps_the_old_folder(tmp_path):
    with atomic_path(tmp_path / "d", is_dir=True) as d:
        (d / "old").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "d", is_dir=True) as d:
            (d / "new").write_text("2")
            raise RuntimeError("killed")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_stale_leftovers_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / ".out.txt.tmp-dead").write_text("half")
    (tmp_path / ".out.txt.tmp-deaddir").mkdir()
    write_text(tmp_path / "out.txt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    assert (tmp_path / "out.txt").read_text() == "whole"
