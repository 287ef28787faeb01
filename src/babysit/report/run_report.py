"""The run report: one self-contained HTML page (and a terminal summary) from a run folder.

    report = bs.run_report("runs/digits-mlp-20240501-120000")
    report.print()                 # rich summary and ranked findings
    report.write()                 # runs/<name>/report.html, images embedded, no network

What it reads: the run record (docs/run-record.md) and, when present,
`check.json` in the same folder (written by `babysit check --out RUN_DIR` and by
`babysit doctor`). What the page shows, in order: the findings first (the
preflight's and the diagnosis rules', ranked, each with its evidence, the
lecture rule and the fix), then the learning curves, the per-layer activation
histograms and std over time, the update/weight ratios against 1e-3, the
relative gradients, the dead/saturated fractions, per-class validation accuracy
of the best checkpoint, the preflight checks with the learning-rate range test,
the config, and the environment and events. Every string from the user (run
name, class names, config values, finding texts) is escaped by `Page`.

A damaged record is read around, not through: a record file that is missing,
unreadable or not JSON, a line of metrics, probes or events that is not a JSON
object, or a check.json babysit cannot read is skipped, and the report says what
it skipped (on top of the page and in the terminal summary). Only config.json is
required: without it the folder is not a run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from babysit.checks.lr_range import plot_lr_range
from babysit.io import loads_json
from babysit.checks.preflight import CHECK_FILE
from babysit.config import RunConfig
from babysit.data.datasets import Dataset
from babysit.diagnose.findings import Finding, findings_table, worst_severity
from babysit.diagnose import confirm
from babysit.diagnose.merge import merge_findings
from babysit.diagnose.program_rules import program_checks, readable
from babysit.errors import BabysitError, DataError
from babysit.report.classes import ClassAccuracy, class_accuracy
from babysit.report.html import Page, Section
from babysit.train.record import RunRecord
from babysit.train.state import FitResult

REPORT_FILE = "report.html"
# Evidence lists and dicts longer than this are shown as their first and last items.
SHOWN = 8


def fmt(value: Any) -> str:
    """Evidence as short text: 3 significant digits, long lists and dicts elided in the middle."""
    if isinstance(value, bool):
        return str(value).lower()  # as in the TOML config
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        items = [fmt(v) for v in value]
        return "[" + _elide(items, "values") + "]"
    if isinstance(value, dict):
        return _elide([f"{k}: {fmt(v)}" for k, v in value.items()], "entries")
    return str(value)


def _elide(items: list[str], noun: str) -> str:
    if len(items) <= SHOWN:
        return ", ".join(items)
    return f"{', '.join(items[:3])}, …, {', '.join(items[-3:])} ({len(items)} {noun})"


def read_check(path: Path) -> dict[str, Any] | None:
    """The saved preflight report (check.json) of a run folder, or None when there is none."""
    file = path / CHECK_FILE
    if not file.is_file():
        return None
    try:
        saved = loads_json(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read '{file}' ({e}); rewrite it with `babysit check --out {path}`") from None
    try:
        if not isinstance(saved, dict) or not isinstance(saved.get("checks"), list):
            raise TypeError("no list of checks")
        for c in saved["checks"]:
            for f in c.get("findings", []):
                Finding.from_dict(f)  # every finding must be one babysit can read (an undeclared kind reads as "unknown")
    except (TypeError, ValueError, AttributeError):
        raise DataError(f"'{file}' is not a babysit check report; rewrite it with `babysit check --out {path}`") from None
    return saved


def _read_lines(path: Path, skipped: list[str]) -> list[dict[str, Any]]:
    """The JSON-object lines of a JSON-lines file; each bad line is skipped and noted (a last line cut by a kill silently)."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        skipped.append(f"{path.name}: cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})")
        return []
    out, bad = [], []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = loads_json(line)
        except json.JSONDecodeError:
            record = None
            if i == len(lines) - 1:
                continue  # written when the run was killed
        if isinstance(record, dict):
            out.append(record)
        else:
            bad.append(i + 1)
    if bad:
        skipped.append(f"{path.name}: line{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''} not valid JSON")
    return out


def _read_object(path: Path, skipped: list[str], *, required: bool = False) -> dict[str, Any] | None:
    """A JSON-object file, or None (missing; or damaged, which is noted, or a DataError when `required`)."""
    if not path.is_file():
        return None
    try:
        value = loads_json(path.read_text(encoding="utf-8"))
        problem = None if isinstance(value, dict) else f"holds {type(value).__name__}, not a JSON object"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problem = f"cannot be read ({getattr(e, 'strerror', None) or e})"
    if problem is None:
        return value
    if required:
        raise DataError(f"'{path}' {problem}; the run record is damaged and cannot be reported")
    skipped.append(f"{path.name}: {problem}")
    return None


def read_around(path: str | Path) -> tuple[RunRecord, list[str]]:
    """Read a run folder as far as it reads: the record, and what was skipped (missing, unreadable or damaged parts).

    Only config.json is required; see the module docstring.
    """
    p = Path(path)
    if not (p / "config.json").is_file():
        raise DataError(f"'{p}' is not a run record (no config.json); runs live in runs/<name>/, see `babysit runs`")
    skipped: list[str] = []
    config = _read_object(p / "config.json", skipped, required=True)
    env = _read_object(p / "env.json", skipped)
    if env is None and not (p / "env.json").exists():
        skipped.append("env.json: missing (no environment shown)")
    record = RunRecord(
        path=p,
        config=config,
        env=env or {},
        metrics=_read_lines(p / "metrics.jsonl", skipped),
        probes=_read_lines(p / "probes.jsonl", skipped),
        events=_read_lines(p / "events.jsonl", skipped),
        summary=_read_object(p / "summary.json", skipped),
        program=_read_object(p / "program.json", skipped),
    )
    if record.program is not None and not readable(record.program):
        skipped.append("program.json: not babysit's program facts (no program checks shown)")
        record.program = None
    if record.summary is not None and not isinstance(record.summary.get("status"), str):
        skipped.append("summary.json: no status")
        record.summary = None
    probes_on = (config.get("watch") or {}).get("probes", "light") != "off"
    if probes_on and not (p / "probes.jsonl").exists() and (record.metrics or record.summary):
        skipped.append("probes.jsonl: missing (no per-layer plots)")
    return record, skipped


@dataclass
class RunReport:
    """A run record with its ranked findings, preflight report and per-class results, ready to render.

    Build it with `run_report(path)`.
    """

    record: RunRecord
    findings: list[Finding]
    check: dict[str, Any] | None = None
    classes: ClassAccuracy | None = None
    classes_note: str = ""  # why per-class results are missing
    skipped: tuple[str, ...] = ()  # the damaged or missing parts of the record, read around

    @property
    def facts(self) -> dict[str, Any]:
        """The headline numbers: status, epochs, best validation accuracy (epoch), test accuracy, set-up."""
        return _facts(self.record)

    @property
    def status(self) -> str:
        """"error", "warning", "info" (the worst severity over all findings) or "ok"."""
        return worst_severity(self.findings)

    def page(self) -> Page:
        """The HTML page (see the module docstring for its sections)."""
        page = Page(f"babysit report: {self.record.name}")
        self._findings(page.section("Findings"))
        self._program(page.section("Training program"))
        self._curves(page.section("Learning curves"))
        self._probes(page)
        self._classes(page.section("Per-class validation accuracy"))
        self._checks(page.section("Preflight checks"))
        self._config(page.section("Configuration"))
        self._environment(page.section("Run"))
        return page

    def summary_page(self) -> Page:
        """The short page a notebook shows for a run: its facts, findings and learning curves."""
        page = Page(f"babysit run: {self.record.name}")
        self._findings(page.section("Findings"))
        self._curves(page.section("Learning curves"))
        page.section("Report").text(f"The whole report, with the layers' plots: bs.run_report({str(self.record.path)!r}) or `babysit report {self.record.path}`.")
        return page

    def _repr_html_(self) -> str:
        """The whole report inline in a Jupyter notebook (plots as embedded images)."""
        return self.page().fragment()

    def write(self, path: str | Path | None = None) -> Path:
        """Write the page atomically to `path` (default: report.html in the run folder); returns the path."""
        return self.page().write(path if path is not None else self.record.path / REPORT_FILE)

    def print(self, console: Console | None = None) -> None:
        """The terminal summary: the run's facts, then the ranked findings (or that none were found)."""
        console = console or Console()
        facts = Table(title=f"run {escape(self.record.name)}", show_header=False)
        for key, value in self.facts.items():
            facts.add_row(key, escape(fmt(value)))
        body = findings_table(self.findings, title="findings (most important first)") if self.findings else "[green]no problems found[/]"
        console.print(Group(facts, body))
        for part in self.skipped:
            console.print(f"[yellow]skipped:[/] {escape(part)}", highlight=False, soft_wrap=True)
        for check, status, detail in program_checks(self.record.program):
            if status == "not run":
                console.print(f"[dim]program check not run:[/] {escape(check)}: {escape(detail)}", highlight=False, soft_wrap=True)

    def _program(self, sec: Section) -> None:
        rows = program_checks(self.record.program)
        if not rows:
            sec.text("No program facts (program.json) in this run folder: it was recorded before babysit read the training program.", "note")
            return
        sec.text(f"What babysit read from the training loop ({self.record.program.get('where', '?')}) by hooks: which checks ran, and why others could not.")
        sec.table(["check", "status", "detail"], [list(r) for r in rows], cell_classes=[["", "sev-pass" if s == "ran" else "note", ""] for _, s, _ in rows])

    def _findings(self, sec: Section) -> None:
        sec.text(" · ".join(f"{k}: {fmt(v)}" for k, v in self.facts.items()))
        if self.skipped:
            sec.text("Skipped (damaged or missing, so not shown): " + "; ".join(self.skipped), "note")
        if not self.findings:
            sec.text("No problems found: every preflight check passed and no diagnosis rule fired.", "sev-pass")
        if self.check is None:
            sec.text(f"No preflight report ({CHECK_FILE}) in this run folder: `babysit check --out {self.record.path}` adds one.", "note")
        finding_cards(sec, self.findings)

    def _curves(self, sec: Section) -> None:
        curves(sec, self.record.metrics, self.facts.get("best epoch"))

    def _probes(self, page: Page) -> None:
        from babysit.report import plots  # imports matplotlib: only when a page is drawn, not to read or print a report

        probes = self.record.probes
        sec = page.section("Activations per layer")
        if not probes:
            sec.text("No probes recorded (watch.probes = 'off'): train with --watch.probes=light to see the layers.", "note")
            return
        figures = [
            (sec, plots.activation_histograms(probes), "histograms of each activation layer's output at the first, last and evenly spaced probed steps"),
            (sec, plots.activation_std(probes), "activation std per layer; dark = input side, light = output side"),
            (page.section("Update/weight ratios"), plots.update_ratios(probes),
             "||ΔW||/||W|| of each weight tensor per probed step (log axis); about 1e-3 is healthy"),
            (page.section("Gradient flow"), plots.relative_gradients(probes),
             "||∇W||/||W|| per weight tensor; a wide fan from output to input means vanishing or exploding gradients"),
            (page.section("Dead and saturated units"), plots.unit_health(probes),
             "fraction of dead ReLU units and of saturated tanh/sigmoid outputs per layer"),
        ]
        for target, fig, caption in figures:
            if fig is None:
                target.text("Nothing of this kind in the probes (no such layers or parameters).", "note")
            else:
                target.figure(fig, caption=caption)

    def _classes(self, sec: Section) -> None:
        from babysit.report import plots  # imports matplotlib: only when a page is drawn, not to read or print a report

        c = self.classes
        if c is None:
            sec.text(f"Not available: {self.classes_note}", "note")
            return
        sec.text(f"Best checkpoint (epoch {c.epoch}) on the validation split: {c.overall:.2%} of {sum(c.counts)} samples.")
        rows = []
        for i, name in enumerate(c.class_names):
            other = c.confused_with(i)
            rows.append([name, c.counts[i], f"{c.accuracy[i]:.1%}" if math.isfinite(c.accuracy[i]) else "-",
                         f"{other[0]} ({other[1]})" if other else "-"])
        sec.table(["class", "samples", "accuracy", "most often mistaken for"], rows)
        sec.figure(plots.confusion(c.matrix, c.class_names), caption="confusion matrix, each row normalised by its class's samples")

    def _checks(self, sec: Section) -> None:
        if self.check is None:
            sec.text(f"No {CHECK_FILE} here: run `babysit check --out {self.record.path}` (or `babysit doctor`) to add the checks.", "note")
            return
        check_table(sec, self.check)

    def _config(self, sec: Section) -> None:
        defaults = RunConfig().to_dict()
        changed, unchanged = [], []
        for section, values in self.record.config.items():
            for key, value in values.items():
                default = defaults.get(section, {}).get(key)
                if value == default:
                    unchanged.append(f"{section}.{key} = {fmt(value)}")
                else:
                    changed.append([f"{section}.{key}", fmt(value), fmt(default)])
        if changed:
            sec.table(["set for this run", "value", "babysit's default"], changed)
        sec.text("At their defaults: " + ", ".join(unchanged) if unchanged else "No key at its default.", "note")

    def _environment(self, sec: Section) -> None:
        env = self.record.env
        sec.table(["key", "value"], [[k, " ".join(map(str, v)) if isinstance(v, list) else v] for k, v in env.items()])
        if self.record.events:
            sec.table(["step", "event", "detail"], [[e.get("step", ""), e.get("event", ""), e.get("detail", "")] for e in self.record.events])

    def __repr__(self) -> str:
        return f"RunReport({self.record.name!r}, {self.status}, findings={[f.rule for f in self.findings]})"


def finding_cards(sec: Section, findings: list[Finding]) -> None:
    """One card per finding, in their order: the evidence, the lecture rule, the fix, and what explains it."""
    for f in findings:
        fields = [(k.replace("_", " "), fmt(v)) for k, v in f.evidence.items()]
        fields += [("lecture rule", f.lecture_rule), ("fix", f.fix), ("rule", f.rule), ("phase", f.phase)]
        fields += [("first seen", fmt(f.first_seen))] if f.first_seen is not None else []
        fields += [("explained by", f.explained_by)] if f.explained_by else []
        sec.card(f.title, fields, tag=f.severity)


def curves(sec: Section, metrics: list[dict[str, Any]], best_epoch: int | None) -> None:
    """The learning curves of per-epoch metrics, or a note that no epoch finished."""
    from babysit.report import plots  # imports matplotlib: only when a page is drawn, not to read or print a report

    fig = plots.learning_curves(metrics, best_epoch)
    if fig is None:
        sec.text("No epoch finished: nothing to plot.", "note")
        return
    sec.figure(fig, caption="train (o) and validation (s) per epoch; docs/lectures.md §7 reads these shapes")


def findings_page(findings: list[Finding], title: str = "babysit diagnosis") -> Page:
    """A page of finding cards (what a notebook shows for `bs.diagnose(...)`)."""
    page = Page(title)
    sec = page.section(f"Findings ({len(findings)}, most important first)")
    if not findings:
        sec.text("No problems found: no diagnosis rule fired.", "sev-pass")
    finding_cards(sec, findings)
    return page


def run_html(path: str | Path) -> str:
    """A run record's summary page as a notebook fragment (facts, findings, learning curves)."""
    return run_report(path, per_class=False).summary_page().fragment()


def check_table(sec: Section, check: dict[str, Any]) -> None:
    """A saved preflight report (`CheckReport.to_dict()`): the checks with their status, and the learning-rate range test's plot."""
    from babysit.report import plots  # imports matplotlib: only when a page is drawn, not to read or print a report

    checks = check["checks"]
    statuses = [str(c.get("status", "")) for c in checks]
    sec.table(
        ["check", "status", "result", "seconds"],
        [[c.get("name", ""), s, c.get("summary", ""), c.get("seconds", "")] for c, s in zip(checks, statuses)],
        cell_classes=[["", f"sev-{s}", "", ""] for s in statuses],
    )
    sweep = next((c["evidence"] for c in checks if c.get("name") == "lr_range" and (c.get("evidence") or {}).get("lrs")), None)
    if sweep is not None:
        evidence = {**sweep, **{k: plots.finite(sweep.get(k, [])) for k in ("lrs", "losses", "smoothed")}}
        sec.figure(plot_lr_range(evidence), caption="learning-rate range test: loss while the rate grows exponentially; the proposal and the search range")


def check_html(check: dict[str, Any], findings: list[Finding]) -> str:
    """A preflight report as a notebook fragment: its findings as cards, then the checks and the range test."""
    page = Page(f"babysit check: {check.get('status', '?')}")
    sec = page.section(f"Findings ({len(findings)}, most important first)")
    if not findings:
        sec.text("No problems found: every preflight check passed.", "sev-pass")
    finding_cards(sec, findings)
    check_table(page.section("Preflight checks"), check)
    return page.fragment()


def fit_html(result: FitResult) -> str:
    """A `bs.fit` result as a notebook fragment: its summary, the diagnosis of its history, its learning curves."""
    from babysit.diagnose.rules import diagnose

    summary = result.summary()
    page = Page(f"babysit fit: {result.status}")
    sec = page.section("Findings")
    sec.text(" · ".join(f"{k.replace('_', ' ')}: {fmt(v)}" for k, v in summary.items() if v not in (None, "")))
    findings = diagnose(result)
    if not findings:
        sec.text("No problems found: no diagnosis rule fired.", "sev-pass")
    finding_cards(sec, findings)
    curves(page.section("Learning curves"), result.history.records, summary["best_epoch"])
    return page.fragment()


def _facts(record: RunRecord) -> dict[str, Any]:
    """The headline numbers of a run: status, epochs, best validation accuracy, test accuracy, recipe."""
    cfg, summary, best = record.config, record.summary or {}, record.best()
    train = cfg.get("train", {})
    facts: dict[str, Any] = {"status": record.status, "epochs": len(record.metrics)}
    if best:
        facts["best val accuracy"] = f"{best['val_accuracy']:.2%}"
        facts["best epoch"] = best["epoch"]
    if isinstance(summary.get("test_accuracy"), (int, float)):
        facts["test accuracy"] = f"{summary['test_accuracy']:.2%}"
        if isinstance(summary.get("test_accuracy_single"), (int, float)):  # data.test_augment: fixed crops averaged at test
            facts["test accuracy"] += f" (mean of {summary['test_views']} fixed views; the inputs as they are: {summary['test_accuracy_single']:.2%})"
    model = cfg.get("model", {})
    net = Path(model["script"]).name if model.get("script") else model.get("name", "?")
    facts["setup"] = f"{cfg.get('data', {}).get('name', '?')} / {net} / {train.get('optimizer', '?')} lr {fmt(train.get('lr'))}"
    return facts


def run_report(path: str | Path, *, per_class: bool = True, data: Dataset | None = None) -> RunReport:
    """Read a run folder, diagnose it (with its check.json findings when present), and evaluate it per class.

    Args:
        path: the run folder (runs/<name>/).
        per_class: rebuild the data and best model for per-class validation
            accuracy (costs a data load and one pass over the validation split).
        data: the run's data set when already loaded (must be what its config loads).
    """
    record, skipped = read_around(path)
    try:
        check = read_check(record.path)
    except DataError as e:
        check = None
        skipped.append(f"{CHECK_FILE}: {e}")
    classes, note = None, "turned off"
    if per_class:
        try:
            classes = class_accuracy(record, data)
        except BabysitError as e:
            note = str(e)
    findings = confirm.apply(merge_findings(record, check), confirm.load(record.path))  # doctor's experiments, when it ran them
    return RunReport(record, findings, check, classes, note, tuple(skipped))
