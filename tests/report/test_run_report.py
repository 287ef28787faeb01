"""The run report: findings first, every plot the lectures ask for, per-class results, escaped user strings."""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import replace

import pytest
import torch
from rich.console import Console

import babysit as bs
from babysit.checks.base import CheckSettings
from babysit.errors import DataError
from babysit.report.classes import class_accuracy
from babysit.diagnose.merge import merge_findings
from babysit.report.run_report import fmt, read_check, run_report
from babysit.build import model_from_config

QUICK = CheckSettings(overfit_steps=100, sweep_steps=60, baseline_steps=60)
SECTIONS = ["Findings", "Training program", "Learning curves", "Activations per layer", "Update/weight ratios", "Gradient flow",
            "Dead and saturated units", "Per-class validation accuracy", "Preflight checks", "Configuration", "Run"]


def config(model=None, train=None, data=None, watch=None):
    return bs.build_config({
        "data": {"name": "digits", **(data or {})},
        "model": {"name": "mlp", "hidden": [32], **(model or {})},
        "train": {"device": "cpu", "epochs": 3, **(train or {})},
        "watch": watch or {},
    })


def recorded(root, name, cfg, data=None, check=True):
    """A run recorded by start_run, with check.json beside it (as doctor writes it)."""
    done = bs.workflows.start_run(cfg, runs_dir=root, name=name, progress=False, data=data)
    if check:
        net = model_from_config(cfg.model, done.data, seed=cfg.train.seed)
        bs.check(net, done.data, cfg.train, settings=QUICK, progress=False).save(done.record)
    return done.record


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("report-runs")
    return {
        "healthy": recorded(root, "healthy", config(), digits),
        "dead": recorded(root, "dead", config(model={"bias": -5.0}), digits),
        "no-probes": recorded(root, "no-probes", config(watch={"probes": "off"}), digits, check=False),
    }


def html_of(path, **kw):
    return run_report(path, **kw).page().render()


def section_titles(page):
    return re.findall(r"<h2>(.*?)</h2>", page)


def test_the_page_has_every_section_in_order_and_is_self_contained(runs):
    page = html_of(runs["healthy"])
    assert section_titles(page) == SECTIONS
    # curves, histograms, std, update ratios, gradients, dead units, confusion matrix, range test
    assert page.count('src="data:image/png;base64,') == 8
    assert "http://" not in page and "https://" not in page and "<script" not in page and "src=\"file" not in page


def test_findings_come_first_with_evidence_lecture_rule_and_fix(runs):
    report = run_report(runs["dead"])
    page = report.page().render()
    first = report.findings[0]
    assert first.rule == "dead_relu_at_init" and first.severity == "error"
    # The first finding's card sits above the first figure.
    assert page.index("<h2>Findings</h2>") < page.index(fmt_html(first.title)) < page.index("<h2>Learning curves</h2>")
    card = page[page.index(fmt_html(first.title)):].split("</div>")[0]
    for label in ("dead fraction", "lecture rule", "fix", "rule"):
        assert f"<dt>{label}</dt>" in card
    assert "docs/lectures.md §1" in card and 'class="badge error"' in page


def fmt_html(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")


def test_preflight_and_run_findings_are_merged_once_per_rule(runs):
    record = bs.load_run(runs["dead"])
    check = read_check(record.path)
    merged = merge_findings(record, check)
    rules = [f.rule for f in merged]
    assert len(rules) == len(set(rules))
    from_check = {f["rule"] for f in check["findings"]}
    from_run = {f.rule for f in bs.diagnose(record)}
    assert set(rules) == from_check | from_run and "dead_relu_at_init" in from_check & from_run
    # At init 1 layer of 32 units with bias -5 is partly dead (a warning); training kills 81% (an error).
    # The more severe finding is kept, and it outranks the learning-rate symptom it causes.
    at_init = next(f for f in check["findings"] if f["rule"] == "dead_relu_at_init")
    in_training = next(f for f in bs.diagnose(record) if f.rule == "dead_relu_at_init")
    assert (at_init["severity"], in_training.severity) == ("warning", "error")
    assert merged[0] == in_training and "lr_too_low" in rules[1:]


def test_per_class_accuracy_of_the_best_checkpoint_matches_the_recorded_validation(runs, digits):
    record = bs.load_run(runs["healthy"])
    classes = class_accuracy(record, digits)
    assert classes.class_names == digits.class_names and sum(classes.counts) == len(digits.val)
    assert classes.overall == pytest.approx(record.best()["val_accuracy"], abs=1e-9)
    assert classes.epoch == record.best()["epoch"]
    # Per class, by hand: the rebuilt best model's predictions on the validation split.
    net = model_from_config(bs.build_config(record.config).model, digits)
    net.load_state_dict(bs.train.load_checkpoint(record.path / "checkpoints" / "best.pt")["model"])
    predicted = net.eval()(digits.val.x).argmax(1)
    for c in range(10):
        mine = digits.val.y == c
        assert classes.accuracy[c] == pytest.approx(float((predicted[mine] == c).float().mean()))
    page = run_report(record.path, data=digits).page().render()
    assert "most often mistaken for" in page and f"{classes.overall:.2%} of {len(digits.val)} samples" in page


def test_per_class_uses_the_averaged_weights_validation_scored(tmp_path, digits):
    path = recorded(tmp_path, "ema", config(train={"averaging": "ema", "ema_decay": 0.9}), digits, check=False)
    record = bs.load_run(path)
    assert class_accuracy(record, digits).overall == pytest.approx(record.best()["val_accuracy"], abs=1e-9)


def test_per_class_refuses_a_run_whose_data_changed(tmp_path, digits):
    path = recorded(tmp_path, "moved", config(), digits, check=False)
    record = bs.load_run(path)
    record.config["data"]["seed"] = 7  # another validation split than the one the run scored
    with pytest.raises(DataError, match="changed since the run"):
        class_accuracy(record)
    shutil.rmtree(path / "checkpoints")
    report = run_report(path)
    assert report.classes is None and "does not exist" in report.classes_note
    assert "Not available: checkpoint" in report.page().render()


def test_a_run_without_probes_or_check_says_what_is_missing(runs):
    page = html_of(runs["no-probes"], per_class=False)
    assert section_titles(page) == ["Findings", "Training program", "Learning curves", "Activations per layer",
                                    "Per-class validation accuracy", "Preflight checks", "Configuration", "Run"]
    assert "No probes recorded" in page and "babysit check --out" in page and "Not available: turned off" in page
    assert page.count("data:image/png;base64,") == 1  # the learning curves


def test_a_diverged_run_is_reported_with_the_explosion_first(tmp_path, digits):
    path = recorded(tmp_path, "boom", config(train={"optimizer": "sgd", "lr": 5.0}), digits, check=False)
    report = run_report(path, data=digits)
    assert report.facts["status"] == "diverged" and report.findings[0].rule == "loss_explodes"
    assert "<h2>Learning curves</h2>" in report.page().render()


def test_every_user_string_is_escaped(tmp_path):
    # Class names from a CSV file's label column, and a run folder renamed to markup.
    evil = ["<script>alert(1)</script>", "</td><img src=x onerror=alert(2)>", "$\\frac{ [bold]x[/]"]
    g = torch.Generator().manual_seed(0)
    file = tmp_path / "evil.csv"
    with open(file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "label"])
        for i in range(300):
            c = i % 3
            w.writerow([float(c + 0.3 * torch.randn(1, generator=g)), float(-c + 0.3 * torch.randn(1, generator=g)), evil[c]])
    cfg = config(data={"name": "arrays", "path": str(file)}, train={"epochs": 4})
    path = recorded(tmp_path, "evil", cfg)
    renamed = path.rename(tmp_path / '<img src=x onerror=alert(3)> "quoted"')
    report = run_report(renamed)
    assert report.classes is not None and report.classes.class_names == tuple(sorted(evil))
    page = report.page().render()
    for raw in [*evil[:2], "<img src=x onerror=alert(3)>"]:
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(3)&gt; &quot;quoted&quot;" in page
    assert "<script" not in page and "onerror=alert" not in page.replace("&lt;img src=x onerror=alert", "")
    assert str(file).replace("<", "&lt;") in page  # config values (data.path) are shown, escaped
    console = Console(record=True, width=200)
    report.print(console)  # rich markup in a name is printed as text, not interpreted
    assert "<img src=x onerror=alert(3)>" in console.export_text()


def test_terminal_summary_lists_the_facts_and_the_ranked_findings(runs):
    console = Console(record=True, width=200)
    report = run_report(runs["dead"], per_class=False)
    report.print(console)
    text = console.export_text()
    assert "run dead" in text and "status" in text and "completed" in text and "best val accuracy" in text
    assert text.index(report.findings[0].title[:40]) < text.index(report.findings[-1].title[:40])
    assert repr(report).startswith("RunReport('dead', error, findings=['dead_relu_at_init'")


def test_write_puts_report_html_in_the_run_folder_atomically(runs, tmp_path):
    path = run_report(runs["healthy"], per_class=False).write()
    assert path == runs["healthy"] / "report.html" and path.read_text().startswith("<!doctype html>")
    elsewhere = run_report(runs["healthy"], per_class=False).write(tmp_path / "sub" / "r.html")
    assert elsewhere.is_file() and not list(elsewhere.parent.glob(".*.tmp"))


def test_evidence_is_shown_short():
    assert fmt(0.123456) == "0.123" and fmt(True) == "true" and fmt(None) == "none"
    assert fmt([1.0, 2.5]) == "[1, 2.5]"
    assert fmt(list(range(20))) == "[0, 1, 2, …, 17, 18, 19 (20 values)]"
    assert fmt({"1": 0.5, "3": 1e-9}) == "1: 0.5, 3: 1e-09"


def test_a_damaged_check_file_is_skipped_with_a_clear_note(runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs["healthy"], copy)
    (copy / "check.json").write_text("{not json")
    built = run_report(copy, per_class=False)
    assert built.check is None and len(built.skipped) == 1
    assert re.search(r"check.json: cannot read .*check.json.*babysit check --out", built.skipped[0])
    for bad in ('{"status": "pass"}', '[1, 2]', '{"checks": [{"name": "x", "findings": [{"rule": "x", "severity": "fatal", "title": "t"}]}]}',
                '{"checks": [{"findings": [{"surprise": 1}]}]}', '{"checks": [3]}'):
        (copy / "check.json").write_text(bad)
        assert "is not a babysit check report" in run_report(copy, per_class=False).skipped[0]
    with pytest.raises(DataError, match="is not a babysit check report"):
        read_check(copy)  # the reader itself still refuses it


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(DataError, match="is not a run record"):
        run_report(tmp_path)


def test_check_report_save_writes_what_the_report_reads(tmp_path, digits):
    net = bs.blocks.mlp(digits.input_shape, 10, hidden=(16,))
    report = bs.check(net, digits, bs.Recipe(device="cpu"), settings=QUICK, progress=False)
    written = report.save(tmp_path)
    assert [p.name for p in written] == ["check.json", "lr_range.png"]
    assert read_check(tmp_path)["checks"][0]["name"] == replace(report).results[0].name
