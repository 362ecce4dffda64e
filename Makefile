# One command per job; each creates the local virtual environment `.venv` on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
MUTATION_STAMP := $(VENV)/.installed-mutation

.PHONY: demo test bench reproduce explore docs docs-serve docs-figures mutation wheel-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $(DOCS_STAMP)

$(MUTATION_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test,mutation]"
	touch $(MUTATION_STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/simulate.py --n 2 --corr 0.3

# The explorer's browser test needs Chromium (Debian's package); without it that test skips.
test: $(STAMP)
	bash .ci/install-browser || echo "make test: no Chromium, the explorer's browser test will skip"
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py --all

explore: $(STAMP)
	$(BIN)/python scripts/explore.py

# The documentation site, offline, into site/ (the tutorials run during the build).
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 PARTICLES_DOCS_CACHE=true $(BIN)/mkdocs serve

# Refresh the committed copy of the paper's figures that the site shows. The committed copy
# is `make docs-figures FULL=1`: the Transformers at the paper's settings (about 2 hours).
docs-figures: $(STAMP)
	$(BIN)/python scripts/reproduce.py --all $(if $(FULL),--full) --out docs/figures
	$(BIN)/python docs/hooks/keep_figures.py docs/figures

# Mutation testing of the core (about an hour on 2 cores; not part of CI): writes
# mutation/REPORT.md and the score in TESTING.md.
mutation: $(MUTATION_STAMP)
	PYTHON=$(BIN)/python .ci/mutation

# Build the wheel, install it into a fresh environment, smoke-test it.
wheel-smoke:
	.ci/wheel-smoke

clean:
	rm -rf $(VENV) runs figures sweeps site dist build .cache
