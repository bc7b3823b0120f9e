# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN    ?= runs/demo

.PHONY: install demo test test-all bench-baseline bench-speed bench-parts bench-soak clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(PY) -m pyro_vae train --dataset mnist-10k --epochs 10 --out $(RUN) --overwrite

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

# Benchmarks print measured tables; see docs/ for the figures and what they mean.
bench-baseline: install
	$(PY) benchmarks/vae_baseline.py

bench-speed: install
	$(PY) benchmarks/speed.py

bench-parts: install
	$(PY) benchmarks/priors_guides.py

bench-soak: install
	$(PY) benchmarks/soak.py

clean:
	rm -rf runs .pytest_cache build dist *.egg-info
