# The two set-up commands of the README: `make run` and `make test`.
# Both create .venv and install the pinned dependencies (constraints.txt) themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# pytest processes for `make test` (pytest-xdist); each starts its own Temporal servers.
TEST_WORKERS ?= 2

.PHONY: run test lint types unit install clean bench

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/mispers dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# mypy runs while the suite runs (it needs a core for half a minute; the suite mostly waits on
# its servers); its report is printed after the suite's, and either failing fails the target.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@types_out=$$(mktemp); \
	$(BIN)/mypy > "$$types_out" 2>&1 & types_pid=$$!; \
	$(BIN)/pytest -q -ra --durations=15 -n $(TEST_WORKERS); tests=$$?; \
	wait $$types_pid; types=$$?; \
	echo "$(BIN)/mypy"; cat "$$types_out"; rm -f "$$types_out"; \
	test $$tests -eq 0 -a $$types -eq 0

clean:
	rm -rf $(VENV) .mispers .pytest_cache .mypy_cache .ruff_cache
