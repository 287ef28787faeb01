"""Jupyter: the example notebook executes, and its cells show the progress, the run, the diagnosis and the report inline."""

import re
from pathlib import Path

import pytest

import babysit as bs
from babysit.report.html import FRAGMENT, Page, scoped_css

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def _outputs(cell) -> list[dict]:
    return [o.get("data", {}) for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the dev extra (nbclient, ipykernel)")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the dev extra (nbclient, ipykernel)")
    pytest.importorskip("ipykernel", reason="the notebook test needs the dev extra (nbclient, ipykernel)")
    cwd = tmp_path_factory.mktemp("notebook")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return [c for c in nb.cells if c.cell_type == "code"], cwd


def test_the_notebook_runs_without_an_error_and_records_in_its_folder(executed):
    cells, cwd = executed
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not [o for c in cells for o in c.outputs if "ipywidgets" in o.get("text", "")]  # rich's live bar was not asked to draw
    assert bs.load_run(cwd / "runs" / "digits-notebook").status == "completed"
    assert bs.load_run(cwd / "runs" / "digits-notebook-high").status == "diverged"


def test_progress_is_one_line_updated_in_place_to_the_last_step(executed):
    cells, _ = executed
    good, high = cells[2], cells[3]
    bars = [d for d in _outputs(good) if "<progress" in d.get("text/html", "")]
    assert len(bars) == 1 and re.search(r"epoch 4  loss \d\.\d{4}  52/52 steps \(100%\)", bars[0]["text/plain"])  # 1437 / 100 x 4 epochs
    assert sum("train loss" in d.get("text/plain", "") for d in _outputs(good)) == 4  # one line per epoch
    stopped = next(d for d in _outputs(high) if "<progress" in d.get("text/html", ""))
    assert re.search(r" 2/52 steps \(4%\)", stopped["text/plain"])  # the diverged run stopped at step 2


def test_the_preflight_checks_show_their_progress_and_their_report_inline(executed):
    cells, _ = executed
    shown = _outputs(cells[1])
    bar = next(d for d in shown if "<progress" in d.get("text/html", ""))
    done = re.search(r"checks done  (\d+)/(\d+) checks \(100%\)", bar["text/plain"])
    assert done and done.group(1) == done.group(2) and int(done.group(1)) >= 5
    report = shown[-1]["text/html"]
    assert "<h1>babysit check: " in report and "<h2>Preflight checks</h2>" in report and "lr_range" in report
    assert report.count('src="data:image/png;base64,') == 1  # the learning-rate range test


def test_the_run_the_diagnosis_and_the_report_show_inline_with_their_plots(executed):
    cells, _ = executed
    run = _outputs(cells[2])[-1]["text/html"]
    assert "babysit run: digits-notebook" in run and "status: completed" in run and run.count('src="data:image/png;base64,') == 1
    diagnosis = _outputs(cells[3])[-1]["text/html"]
    assert diagnosis.count('<div class="card error">') >= 1 and "the loss exploded" in diagnosis and "lower the learning rate" in diagnosis
    report = _outputs(cells[4])[-1]["text/html"]
    assert report.startswith(f'<div class="{FRAGMENT}">') and "babysit report: digits-notebook-high" in report
    for section in ("Findings", "Learning curves", "Activations per layer", "Update/weight ratios", "Per-class validation accuracy"):
        assert f"<h2>{section}</h2>" in report
    assert report.count('src="data:image/png;base64,') >= 5  # curves, histograms, std, update ratios, gradients, ...


def test_a_fragment_styles_only_its_own_elements():
    css = re.search(r"<style>(.*?)</style>", Page("x").fragment()).group(1)
    selectors = [s for rule in re.findall(r"([^{}]+)\{", css) for s in rule.split(",")]
    assert selectors and all(s == f".{FRAGMENT}" or s.startswith(f".{FRAGMENT} ") for s in selectors)  # never the notebook's body or tables


def test_a_fit_result_and_a_findings_list_render_html(digits):
    from babysit.diagnose.findings import Findings

    result = bs.fit(bs.build_model("mlp", digits.input_shape, digits.num_classes), digits, bs.Recipe(optimizer="sgd", lr=20.0, epochs=1), progress=False)
    shown = result._repr_html_()
    assert "<h1>babysit fit: completed</h1>" in shown and '<div class="card error">' in shown and "lower the learning rate" in shown
    assert shown.count('src="data:image/png;base64,') == 1  # the learning curves
    findings = bs.diagnose(result)
    assert isinstance(findings, Findings) and findings == list(findings)  # still a plain list to every other reader
    assert findings._repr_html_().count('class="card ') == len(findings)
