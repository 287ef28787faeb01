# Two commands on a fresh machine: `make demo` and `make test`. Each creates
# .venv when missing and installs everything it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: the pinned CPU wheel is found offline; the package's own
	# requirement is a range that it satisfies, so pip installs nothing more.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/babysit demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n 2

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2

bench: $(STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache runs
