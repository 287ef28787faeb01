"""Generated bad input: any TOML config or CSV file either works or is one babysit error, never another exception."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babysit.config import SECTIONS, build_config, load_toml
from babysit.data.datasets import load_dataset
from babysit.errors import BabysitError

KEYS = sorted({f.name for cls in SECTIONS.values() for f in cls.__dataclass_fields__.values()} | {"lr", "nosuch", ""})
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["relu", "adam", "mlp", "spiral", "digits", "cosine", "cpu", "flip"]),
)  # fmt: skip
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=2))
CONFIGS = st.dictionaries(
    st.sampled_from([*SECTIONS, "trian", "space"]),
    st.one_of(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4), SCALARS),
    max_size=4,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _toml_value(v) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else ("-inf" if v == float("-inf") else repr(v)))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + "}"


def _toml(cfg: dict) -> str:
    lines = [f'"{s}" = {_toml_value(v)}' for s, v in cfg.items() if not isinstance(v, dict)]
    for section, table in cfg.items():
        if isinstance(table, dict):
            lines.append(f'["{section}"]')
            lines += [f'"{k}" = {_toml_value(v)}' for k, v in table.items()]
    return "\n".join(lines) + "\n"


@FAST
@given(cfg=CONFIGS)
def test_any_generated_toml_config_builds_or_is_a_babysit_error(cfg: dict, tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(_toml(cfg), encoding="utf-8")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError:
        pass  # still must be a ConfigError through load_toml
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            build_config(load_toml(path))
        except BabysitError as e:
            assert "\n" not in str(e)


CELLS = st.one_of(
    st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "x", "nan", "1e999", "0x10", "3.5", '"1"', "-0"]), st.text(max_size=4),
)  # fmt: skip


@FAST
@given(
    header=st.lists(st.sampled_from(["a", "b", "label", "c", "", "a "]), min_size=0, max_size=4),
    rows=st.lists(st.lists(CELLS, min_size=0, max_size=5), max_size=25),
)
def test_any_generated_csv_loads_or_is_a_babysit_error(header: list, rows: list, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    text = "\n".join(",".join(c.replace(",", ";").replace("\n", " ").replace("\r", " ") for c in line) for line in [header, *rows])
    path.write_text(text + "\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = load_dataset("arrays", path=str(path))
        except BabysitError as e:
            assert "\n" not in str(e)
        else:
            assert data.num_classes >= 2 and len(data.train) >= data.num_classes
