# Every target creates .venv on first use and installs the pinned development environment.
# constraints/dev.txt pins every version (torch==2.13.0, the CPU wheel; a looser pin pulls CUDA).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := image,torch,webdataset,test
PYTEST_WORKERS ?= 2

.PHONY: venv demo test lint typecheck postgres bench effectiveness clean

$(STAMP): pyproject.toml constraints/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints/dev.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

venv: $(STAMP)

## make demo: the main job on real images shipped with scikit-image (see README)
demo: $(STAMP)
	$(PY) examples/demo.py --out demo-out

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(PY) -m mypy

## make postgres: PostgreSQL's server programs, for the tests' own throwaway server (apt-get when root)
postgres:
	.ci/ensure-postgres

## make test: lint, strict typing, and the whole test suite (against SQLite and a real PostgreSQL server)
test: lint typecheck postgres
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/materialize.py
	$(PY) benchmarks/dataloader.py
	$(PY) benchmarks/registry.py
	$(PY) benchmarks/policy.py

## make effectiveness: the augmentation study of docs/effectiveness.md (about 4 minutes on 2 cores)
effectiveness: $(STAMP)
	$(PY) benchmarks/effectiveness.py

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache .mypy_cache .ruff_cache
