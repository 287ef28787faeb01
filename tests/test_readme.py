"""README.md is executable truth: every ```bash and ```python block in it runs, and every output it shows is printed today.

How the README is read (generic, so a section added later is covered without editing this file):
  - each ```python block runs in a fresh namespace holding PRELUDE: the reader's own objects
    that a fragment names without defining (`model`, `data`, `my_evaluation`), in a
    temporary folder;
  - ```bash blocks are split into commands (a trailing backslash joins lines; `#` starts a
    comment); `babysit ...` runs as `python -m babysit ...` with this interpreter, `python ...`
    with this interpreter, in a temporary folder where `examples/` is the repository's;
  - a command whose comment says "exit code N" must exit N; a transcript showing an `error:`
    line must exit 2 (the CLI's code for bad input); any other must exit 0;
  - output: a plain ``` block directly after a ```bash block (nothing but blank lines between)
    is the output of that block's first command, and a plain ``` block starting with `$ ` is a
    transcript (the command, then its output). Each shown plain line must appear in the real
    output (stdout and stderr, spaces collapsed); a table row (│ a │ b │ ...) must be a real
    row, cell by cell, with each cell's wrapped lines joined (so the terminal's width, which
    decides the wrapping, does not matter).

Shortened, in a principled way (CAPS): a command that trains gets its length overridden by
flags appended at the end (the last occurrence of a flag wins; dotted overrides win over
shortcut flags), never by editing the README; Python blocks get the textual SHRINK
substitutions, each of which must still match the README (a stale one fails the test).
EXCLUDED commands cannot run here, each with its reason; a new command that is neither
`babysit` nor `python` fails until it is run or excluded. FAST commands (and the Python
blocks) run in the default suite; the whole README runs in the slow one.
"""

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babysit.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Commands that cannot run in a test, with the reason.
EXCLUDED = {
    "make": "the two set-up commands run this very suite (make test) or the 100-CPU-second demo (make demo, whose recipe tests/test_examples.py checks)",
    "chromium": "an optional external browser with a placeholder path; tests/report/test_chromium.py runs it on a real report",
    "postgresql://": "needs a PostgreSQL server; tests/tune/test_postgres.py covers it where one is available",
    "pip": "installs packages; the test environment has them",
    "tensorboard": "starts TensorBoard's web server; tests/report/test_tensorboard.py reads the exported events with TensorBoard's own reader",
    "torchrun": "launches several processes; tests/train/test_distributed.py runs examples/ddp_digits.py under torchrun (slow) and two gloo processes in-process",
}

# Flags appended to commands that train, so the whole README runs in minutes (last flag wins).
CAPS = {
    "train": ["--train.epochs=1"],
    "doctor": ["--train.epochs=1"],
    "tune": ["--trials", "4", "--epochs", "1"],
    "auto": ["--budget", "45s"],  # 20 s is too little for a convnet on MNIST-1D to finish one search trial
}

# Python blocks: (README text, shorter text); each README text must occur.
SHRINK = [
    ("trials=20, epochs=2", "trials=4, epochs=1"),
    ('recipe = bs.Recipe(optimizer="nesterov"', 'recipe = bs.Recipe(epochs=2, optimizer="nesterov"'),
    ("sweep_steps=200)", "sweep_steps=50)"),
    ('bs.Recipe(optimizer="adam", lr=1e-3, epochs=10)', 'bs.Recipe(optimizer="adam", lr=1e-3, epochs=2)'),
    ("pl.Trainer(max_epochs=10, ", "pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, "),
    ('eval_strategy="epoch", num_train_epochs=3,', 'eval_strategy="epoch", max_steps=4, disable_tqdm=True,'),
]

# What README fragments use without defining: the reader's own objects.
PRELUDE = '''
import torch
import babysit as bs

data = bs.prepare(bs.load_dataset("digits"))
model = bs.build_model("mlp", data.input_shape, data.num_classes)

from babysit.config import build_config
cfg = build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 1}})  # the reader's run config

def my_evaluation(model, x):
    """The reader's evaluation function (as in examples/check_model.py)."""
    model.eval()
    with torch.no_grad():
        return model(x)
'''

# What the Lightning fragment uses: the reader's LightningModule and loaders, those of
# examples/lightning_mnist1d.py (loaded only for a block that imports lightning: its import is slow).
LIGHTNING_PRELUDE = '''
import importlib.util
from torch.utils.data import DataLoader, TensorDataset

_spec = importlib.util.spec_from_file_location("lightning_mnist1d", EXAMPLES / "lightning_mnist1d.py")
_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_example)
_mnist1d = bs.prepare(bs.load_dataset("mnist1d"))
module = _example.MLP(0.1)
train_loader = DataLoader(TensorDataset(_mnist1d.train.x, _mnist1d.train.y), batch_size=100, shuffle=True)
val_loader = DataLoader(TensorDataset(_mnist1d.val.x, _mnist1d.val.y), batch_size=400)
'''

# What the Hugging Face fragment uses: the reader's model, data sets and compute_metrics, those of
# examples/hf_trainer.py (loaded only for a block that imports transformers).
HF_PRELUDE = '''
import runpy

_example = runpy.run_path(str(EXAMPLES / "hf_trainer.py"))
model = _example["tiny_bert"]()
train, val = _example["digit_sentences"]()
accuracy = _example["accuracy"]
'''

# Files a README command names as the reader's own.
FILES = {
    "net.py": (ROOT / "examples" / "my_model.py").read_text() + "\nmake_net = build_model\n",
}

# Placeholders in README commands -> how to find the real thing in the temporary folder.
PLACEHOLDERS = {
    "runs/digits-mlp-20240501-120000": lambda cwd: str(sorted((cwd / "runs").glob("digits-mlp-*"))[-1].relative_to(cwd)),
}

# The default suite runs these commands (independent of the others, a few seconds each).
FAST = [
    "babysit datasets",
    "babysit blocks optimizer",
    "babysit train --train.learning_rate=0.1",
    "babysit check --data digits --model mlp --lr 1e-7",
]

# Expected exit codes the README states in prose rather than in a comment.
EXIT_CODES = {
    "babysit train --resume runs/first": (2, "runs/first completed earlier in this README; resuming a completed run is refused (tests/faults resumes killed ones)"),
    "babysit doctor --data digits --model mlp --model.init=zeros": (1, "a zero-initialised model: doctor exits 1 when it finds an error-level problem, as the README says"),
}


@dataclass
class Command:
    text: str  # as in the README, without its comment
    comment: str
    line: int
    shown: list[str]  # output lines the README shows for it

    @property
    def exit_code(self) -> int:
        if self.text in EXIT_CODES:
            return EXIT_CODES[self.text][0]
        found = re.search(r"exit code (\d+)", self.comment)
        if found:
            return int(found.group(1))
        return 2 if any(line.startswith("error:") for line in self.shown) and not self.comment else 0


def blocks(text: str) -> list[tuple[str, str, int, int]]:
    """Every fenced block: (language, body, first line number, line after the closing fence)."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence:
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append((fence.group(1), "\n".join(lines[i + 1 : j]), i + 2, j + 1))
            i = j + 1
        else:
            i += 1
    return out


def commands(text: str) -> list[Command]:
    """The bash commands of the README in order, each with the output lines shown for it."""
    found: list[Command] = []
    all_blocks = blocks(text)
    lines = text.splitlines()
    for k, (lang, body, first, after) in enumerate(all_blocks):
        if lang == "bash":
            start = len(found)
            pending, begin = "", first
            for n, raw in enumerate(body.splitlines(), start=first):
                if not pending:
                    begin = n
                if raw.rstrip().endswith("\\"):
                    pending += raw.rstrip()[:-1] + " "
                    continue
                full = pending + raw
                pending = ""
                if not full.strip():
                    continue
                code, _, comment = _split_comment(full)
                found.append(Command(" ".join(code.split()), comment, begin, []))
            nxt = all_blocks[k + 1] if k + 1 < len(all_blocks) else None
            if nxt and nxt[0] == "" and not "".join(lines[after : nxt[2] - 2]).strip() and not nxt[1].startswith("$ "):
                found[start].shown = nxt[1].splitlines()
        elif lang == "" and body.startswith("$ "):
            head, *shown = body.splitlines()
            found.append(Command(" ".join(head[2:].split()), "", first, shown))
    return found


def _split_comment(line: str) -> tuple[str, str, str]:
    """Split off a `#` comment outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], "#", line[i + 1 :]
    return line, "", ""


def excluded(cmd: Command) -> str | None:
    return next((why for key, why in EXCLUDED.items() if cmd.text.split()[0] == key or key in cmd.text), None)


def argv(cmd: Command, cwd: Path) -> list[str]:
    """The command as this interpreter runs it, placeholders resolved and training capped."""
    text = cmd.text
    for placeholder, find in PLACEHOLDERS.items():
        if placeholder in text:
            text = text.replace(placeholder, find(cwd))
    args = shlex.split(text)
    if args[0] == "python":
        return [sys.executable, *args[1:]]
    assert args[0] == "babysit", f"README line {cmd.line}: `{cmd.text}` is neither babysit nor python: run it here or add it to EXCLUDED with a reason"
    caps = [] if "--resume" in args else CAPS.get(args[1], [])
    return [sys.executable, "-m", "babysit", *args[1:], *caps]


def table_rows(lines: list[str]) -> list[list[str]]:
    """The body rows of rich tables, each cell's wrapped lines joined: the same at any terminal width."""
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:  # a wrapped cell goes on in the next line, with the first cell empty
            rows[-1] = [" ".join(f"{a} {b}".split()) for a, b in zip(rows[-1], cells)]
    return rows


def header_rows(lines: list[str]) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("┃").split("┃")] for line in lines if line.startswith("┃")]


BORDER = set("┏┓┗┛┡┩└┘━─┳┻╇┴ ")


def check_output(cmd: Command, output: str) -> None:
    """Each shown plain line appears in `output`; each shown table row (and header) is a real one."""
    lines = output.splitlines()
    real = [" ".join(line.split()) for line in lines]
    rows, headers = table_rows(lines), header_rows(lines)
    where = f"README line {cmd.line}: `{cmd.text}`"
    for row in table_rows(cmd.shown):
        assert row in rows, f"{where} no longer prints the table row {row}"
    for header in header_rows(cmd.shown):
        assert header in headers, f"{where} no longer prints the table header {header}"
    for shown in cmd.shown:
        if shown.strip() and shown[0] not in "│┃" and not set(shown) <= BORDER:
            assert " ".join(shown.split()) in real, f"{where} no longer prints: {shown.strip()}"


def prepare(cwd: Path) -> dict[str, str]:
    (cwd / "examples").symlink_to(ROOT / "examples")
    for name, text in FILES.items():
        (cwd / name).write_text(text)
    src = str(ROOT / "src")
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "130", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            "BABYSIT_RUNS_DIR": str(cwd / "runs")}  # fmt: skip


def run_command(cmd: Command, cwd: Path, env: dict[str, str]) -> None:
    """Run one command as a user would (a fresh process) and check its exit code and shown output."""
    done = subprocess.run(argv(cmd, cwd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    check_result(cmd, done.returncode, done.stdout + done.stderr)


def invoke_command(cmd: Command, cwd: Path) -> None:
    """Run one `babysit` command in this process (CliRunner: no interpreter start-up) and check it the same way."""
    args = argv(cmd, cwd)
    assert args[1:3] == ["-m", "babysit"], cmd.text
    result = CliRunner().invoke(app, args[3:])
    check_result(cmd, result.exit_code, result.stdout + result.stderr)


def check_result(cmd: Command, code: int, output: str) -> None:
    assert code == cmd.exit_code, f"README line {cmd.line}: `{cmd.text}` exited {code}, expected {cmd.exit_code}:\n{output[-3000:]}"
    assert "Traceback" not in output, (cmd.text, output[-3000:])
    check_output(cmd, output)


ALL = commands(README.read_text())


def test_the_readme_parses_into_commands_and_every_fast_one_is_in_it():
    texts = [c.text for c in ALL]
    assert all(f in texts for f in FAST), [f for f in FAST if f not in texts]
    assert all(c in texts for c in EXIT_CODES)
    assert any(c.shown for c in ALL)  # the check table and the error transcript
    unknown = [c.text for c in ALL if not excluded(c) and shlex.split(c.text)[0] not in ("babysit", "python")]
    assert not unknown, f"README commands that are neither run nor excluded: {unknown}"


def test_fast_readme_commands_run_and_print_what_the_readme_shows(tmp_path, monkeypatch):
    prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BABYSIT_RUNS_DIR", str(tmp_path / "runs"))
    for cmd in ALL:
        if cmd.text in FAST:
            invoke_command(cmd, tmp_path)


@pytest.mark.slow
def test_every_readme_command_runs_in_order(tmp_path):
    env = prepare(tmp_path)
    ran, failures = 0, []
    for cmd in ALL:
        if excluded(cmd):
            continue
        try:
            run_command(cmd, tmp_path, env)
        except AssertionError as e:  # go on: one run of this slow test names every stale line
            failures.append(str(e).splitlines()[0])
        ran += 1
    assert not failures, "\n".join(failures)
    assert ran >= 20


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    code = [body for lang, body, _, _ in blocks(README.read_text()) if lang == "python"]
    text = "\n".join(code)
    for old, new in SHRINK:
        assert old in text, f"SHRINK entry {old!r} no longer matches the README; update it"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BABYSIT_RUNS_DIR", str(tmp_path / "runs"))
    prelude: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(PRELUDE, "PRELUDE", "exec"), prelude)
    for k, body in enumerate(code):
        for old, new in SHRINK:
            body = body.replace(old, new)
        scope = dict(prelude)
        if "import lightning" in body:
            pytest.importorskip("lightning", reason="the Lightning block needs the lightning extra")
            scope["EXAMPLES"] = ROOT / "examples"
            exec(compile(LIGHTNING_PRELUDE, "LIGHTNING_PRELUDE", "exec"), scope)
        if "from transformers" in body:
            pytest.importorskip("transformers", reason="the Hugging Face block needs the hf extra")
            scope["EXAMPLES"] = ROOT / "examples"
            exec(compile(HF_PRELUDE, "HF_PRELUDE", "exec"), scope)
        exec(compile(body, f"README python block {k + 1}", "exec"), scope)
    assert (tmp_path / "runs" / "my-loop" / "metrics.jsonl").is_file() and (tmp_path / "best.toml").is_file()
