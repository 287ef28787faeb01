"""What a lab experiment returns, and how it is saved (PNGs, results.json, an HTML page)."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")

from babysit.data.memory import available_memory  # noqa: E402
from babysit.errors import ConfigError, did_you_mean  # noqa: E402
from babysit.io import atomic_write, atomic_write_json  # noqa: E402
from babysit.registry import Registry  # noqa: E402
from babysit.report.html import Page  # noqa: E402

EXPERIMENTS: Registry = Registry("lab experiment")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Claim:
    """One qualitative claim of the lecture, checked against a measured number."""

    text: str
    holds: bool
    evidence: str

    def __repr__(self) -> str:
        return f"Claim({'holds' if self.holds else 'FAILS'}: {self.text} [{self.evidence}])"


@dataclass
class Table:
    """A titled table of numbers."""

    title: str
    header: list[str]
    rows: list[list[Any]]


@dataclass
class LabResult:
    """The numbers, figures and checked claims of one experiment run."""

    name: str
    title: str
    lecture: str  # the lecture topic it reproduces, e.g. "CS231n lecture 6: weight initialisation"
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Any]] = field(default_factory=list)  # (caption, matplotlib figure)
    claims: list[Claim] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, header: list[str], rows: list[list[Any]]) -> None:
        self.tables.append(Table(title, header, rows))

    def figure(self, caption: str, fig: Any) -> None:
        self.figures.append((caption, fig))

    def claim(self, text: str, holds: bool, evidence: str) -> None:
        self.claims.append(Claim(text, bool(holds), evidence))

    @property
    def all_hold(self) -> bool:
        return all(c.holds for c in self.claims)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers and claims (figures are saved as PNG files)."""
        return {
            "name": self.name,
            "title": self.title,
            "lecture": self.lecture,
            "options": self.options,
            "claims": [{"text": c.text, "holds": c.holds, "evidence": c.evidence} for c in self.claims],
            "tables": [{"title": t.title, "header": t.header, "rows": t.rows} for t in self.tables],
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write figure PNGs, results.json and index.html into `out_dir`; returns the HTML path."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        page = Page(f"babysit lab: {self.title}")
        head = page.section("What this reproduces")
        head.text(self.lecture)
        head.table(
            ["claim", "holds", "evidence"],
            [[c.text, "yes" if c.holds else "NO", c.evidence] for c in self.claims],
            row_classes=["sev-pass" if c.holds else "sev-fail" for c in self.claims],
        )
        for t in self.tables:
            page.section(t.title).table(t.header, t.rows)
        figs = page.section("Figures")
        for i, (caption, fig) in enumerate(self.figures, 1):
            slug = re.sub(r"[^a-z0-9]+", "-", caption.lower()).strip("-")[:40] or "figure"
            atomic_write(out / f"{i:02d}-{slug}.png", lambda f, fig=fig: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
            figs.figure(fig, caption)  # embeds and closes the figure
        atomic_write_json(out / "results.json", self.to_dict())
        return page.write(out / "index.html")


# How far a whole-number option may grow past its default when its experiment declares no range:
# the defaults are the lecture's sizes, and ten times them stays within minutes and memory.
GROWTH = 10


def option_limits(memory: Callable[..., float] | None = None, **ranges: tuple[float, float]) -> Callable[[F], F]:
    """Declare an experiment's option ranges (inclusive) and, optionally, its memory need in bytes from its options.

    Undeclared options get `default_range`. Apply it under `EXPERIMENTS.register`:

        @EXPERIMENTS.register("init")
        @option_limits(layers=(1, 100), memory=lambda layers, units, samples, seed: ...)
        def init_experiment(layers: int = 10, ...) -> LabResult: ...
    """

    def mark(fn: F) -> F:
        fn.option_ranges = ranges  # type: ignore[attr-defined]
        fn.option_memory = memory  # type: ignore[attr-defined]
        return fn

    return mark


def default_range(key: str, default: Any) -> tuple[float, float]:
    """An undeclared option's range: a seed any 32-bit value, a count 1 to `GROWTH` x its default, a float finite."""
    if key == "seed":
        return 0, 2**32 - 1
    if isinstance(default, int):
        return 1, GROWTH * max(default, 1)
    return -math.inf, math.inf


def check_limits(name: str, fn: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse, before the experiment allocates anything, an option outside its range or options whose memory need exceeds what is available."""
    ranges = getattr(fn, "option_ranges", {})
    defaults = experiment_options(name)
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"lab option --{key.replace('_', '-')} must be a finite number, got {value}")
        lo, hi = ranges.get(key) or default_range(key, defaults[key])
        if not lo <= value <= hi:
            raise ConfigError(f"lab option --{key.replace('_', '-')} of '{name}' must be between {_number(lo)} and {_number(hi)}, got {_number(value)}")
    memory = getattr(fn, "option_memory", None)
    if memory is not None:
        need, have = memory(**options), available_memory()
        if need > have:
            shown = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items() if k in ranges)
            raise ConfigError(
                f"lab '{name}' with {shown} needs about {need / 2**30:.1f} GiB of memory but {have / 2**30:.1f} GiB is available; use smaller options"
            )


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def experiment_options(name: str) -> dict[str, Any]:
    """An experiment's options and their defaults."""
    sig = inspect.signature(EXPERIMENTS.get(name))
    return {k: p.default for k, p in sig.parameters.items()}


def run_experiment(name: str, out_dir: str | Path | None = "runs/lab", **options: Any) -> LabResult:
    """Run experiment `name` with `options` (checked against its signature) and save it under `out_dir/name`."""
    fn = EXPERIMENTS.get(name)
    valid = experiment_options(name)
    for key, value in options.items():
        if key not in valid:
            raise ConfigError(f"lab experiment '{name}' has no option '{key}'{did_you_mean(key, valid)}; options: {', '.join(valid) or 'none'}")
        default = valid[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"option '{key}' must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"option '{key}' must be a number, got {value!r}")
            if isinstance(default, int) and not float(value).is_integer():
                raise ConfigError(f"option '{key}' must be a whole number, got {value!r}")
            options[key] = type(default)(value)
    check_limits(name, fn, {**valid, **options})
    result = fn(**options)
    result.options = {**valid, **options}
    if out_dir is not None:
        result.save(Path(out_dir) / name)
    return result
