# Every target sets itself up: on a fresh machine with only Python 3, `make demo`, `make test`
# and `make lab` create .venv, install what they need (and nothing more) and run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export NO_MKDOCS_2_WARNING := 1

.PHONY: venv demo test lab lint format bench exercises docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# what the demo needs: the package and its dependencies, no test or docs tools
$(VENV)/.installed-core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# the test suite and the documentation site
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,docs]"
	touch $@

# JupyterLab, for working in the notebooks
$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[notebooks]"
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed-core
	$(BIN)/minattn demo

# Each notebook runs once: pytest executes it as the site shows it and leaves the run in
# build/notebook-cache, which the site build (into build/site) reuses; the site tests then
# check that build (MINATTN_SITE) instead of building their own.
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest --ignore=tests/repo/test_site.py
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site
	MINATTN_SITE=build/site $(BIN)/python -m pytest tests/repo/test_site.py

lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab notebooks/

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/minattn bench

# the student versions of the exercise notebooks, into student/ (make clean leaves it alone)
exercises: $(VENV)/.installed
	$(BIN)/minattn exercises

# the site, offline and openable from disk: build/site/index.html
docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict --site-dir build/site
	@echo "open build/site/index.html (no server needed)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
