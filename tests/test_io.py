import json
import os

import pytest

from babysit.io import atomic_write, atomic_write_json, json_line


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert os.listdir(target.parent) == ["a.json"]  # no temporary files left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("good")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "good"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_written_files_get_normal_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "r.json", {})
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_json_line_is_strict_json():
    line = json_line({"a": float("nan"), "b": [1.0, float("inf")], "c": (2, "x")})
    assert json.loads(line) == {"a": None, "b": [1.0, None], "c": [2, "x"]}
