# The first use of any target creates .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-stress bench lint clean services tools dist docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,fastapi,yaml]' --group test --group lint --group bench
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/tidings demo

# The local services the tests talk to (started if they stopped).
services:
	@scripts/services

# promtool, for the alert rules' test (installed from Debian's prometheus package if missing).
tools:
	@scripts/tools

test: $(STAMP) services tools
	$(BIN)/python -m pytest -q -m "not stress"

# The soak (tests/transports/test_soak.py) runs TIDINGS_SOAK_SECONDS (default 600) on each of the
# six durable transports, about an hour in all; shorter: TIDINGS_SOAK_SECONDS=60 make test-stress
test-stress: $(STAMP) services
	$(BIN)/python -m pytest -q -m stress

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	for dir in tests/*/; do $(BIN)/mypy --strict $$dir*.py || exit 1; done
	$(BIN)/mypy --strict -p examples.guide -m examples.fastapi_app -p bench
	rm -rf $(VENV)/dist && $(BIN)/python -m build --no-isolation --outdir $(VENV)/dist . >/dev/null
	$(BIN)/twine check --strict $(VENV)/dist/*
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The documentation site (mkdocs-material, the API reference from the docstrings) in .venv/site.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

dist: $(STAMP)
	$(BIN)/python -m build --no-isolation --outdir dist .

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
