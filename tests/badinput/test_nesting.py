"""Nesting is bounded: a config, an override or a run record nested thousands deep is one line, never a RecursionError."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.config import MAX_NESTING, build_config, load_toml, nesting_depth, parse_toml
from babysit.errors import BabysitError

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text a TOML value may hold that looks like nesting but is not: brackets in strings and comments.
DECOYS = st.sampled_from(['"[[["', "'{{{'", '"a]]"', '"\\"[["', "'''[[\n{'''", '"""]]\n["""', "1", "true", "2.5"])


def _value(depth: int, decoy: str, table: bool) -> str:
    """A value nested `depth` levels deep (arrays, or inline tables on odd levels) around `decoy`."""
    text = decoy
    for level in range(depth):
        text = f"{{ k = {text} }}" if table and level % 2 else f"[{text}]"
    return text


@FAST
@given(depth=st.integers(0, 6000), decoy=DECOYS, table=st.booleans(), comment=st.booleans())
def test_any_nesting_reads_or_is_refused_in_one_line(depth: int, decoy: str, table: bool, comment: bool, tmp_path: Path) -> None:
    text = f"[train]\n{'# [[[[[[ {{{{ ' if comment else ''}\nlr = {_value(depth, decoy, table)}\n"
    assert nesting_depth(text) == max(depth, 1)  # the [train] header is one level, closed before the value
    path = tmp_path / "deep.toml"
    path.write_text(text, encoding="utf-8")
    try:
        build_config(load_toml(path))
    except BabysitError as e:
        assert "\n" not in str(e)
        if depth > MAX_NESTING:
            assert f"{depth:,} levels deep" in str(e)
    if depth <= MAX_NESTING:
        assert parse_toml(text, "x") == tomllib.loads(text)  # below the bound nothing changes


def test_a_config_nested_5000_arrays_deep_is_one_line(refused, tmp_path: Path) -> None:
    (tmp_path / "deep.toml").write_text("[train]\nlr = " + "[" * 5000 + "]" * 5000 + "\n")
    refused(["train", "--config", str(tmp_path / "deep.toml"), "--runs-dir", str(tmp_path / "runs")], "5,000 levels deep", tmp_path)


def test_an_override_nested_5000_deep_is_one_line(refused, tmp_path: Path) -> None:
    refused(["train", "--train.lr=" + "[" * 5000 + "]" * 5000, "--runs-dir", str(tmp_path / "runs")], "5,000 levels deep", tmp_path)


def test_a_search_file_nested_5000_deep_is_one_line(refused, tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text("trials = " + "[" * 5000 + "]" * 5000 + "\n")
    refused(["tune", "--search", str(tmp_path / "s.toml"), "--storage", str(tmp_path / "j.log"), "--report", str(tmp_path / "r.html")], "levels deep", tmp_path)


def test_a_config_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_text('[data]\nname = "spiral"\n', encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert build_config(load_toml(path)).data.name == "spiral"


def test_a_run_record_nested_5000_deep_is_listed_as_damaged(tmp_path: Path) -> None:
    run = tmp_path / "deep"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(bs.build_config({"data": {"name": "spiral"}, "model": {"name": "mlp"}}).to_dict()))
    (run / "summary.json").write_text('{"status": ' + "[" * 5000 + "]" * 5000 + "}")
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path), "--json"])
    assert listed.exit_code == 0 and "Traceback" not in listed.output, listed.output
    row = json.loads(listed.stdout.splitlines()[-1])
    assert row["status"] == "damaged" and "summary.json" in row["problem"]
    report = CliRunner().invoke(app, ["report", str(run), "--no-per-class"])
    assert report.exit_code in (0, 2) and "Traceback" not in report.output and "internal error" not in report.output, report.output
