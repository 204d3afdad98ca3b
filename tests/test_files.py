"""vaecli.files: the one atomic write."""
from __future__ import annotations

import json

import pytest

from vaecli import files


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    p = tmp_path / "a.json"
    files.write_json(p, {"x": 1})
    files.write_json(p, {"x": 2, "path": tmp_path})
    assert json.loads(p.read_text()) == {"x": 2, "path": str(tmp_path)} and p.read_text().endswith("}\n")
    files.write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.txt"
    files.write_text(p, "old")

    def half_then_fail(f):
        f.write(b"ne")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        files.write_with(p, half_then_fail)
    assert p.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["a.txt"]


def test_caches_live_under_xdg_cache_home_when_it_is_absolute(tmp_path, monkeypatch):
    from vaecli import data

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_home() == tmp_path / "xdg" / "vaecli"
    assert data.default_cache_dir() == tmp_path / "xdg" / "vaecli" / "data"
    for ignored in ("", "relative/cache"):  # unset, or relative: the XDG rule falls back to ~/.cache
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert data.default_cache_dir() == tmp_path / "home" / ".cache" / "vaecli" / "data"
