# Two commands do all set-up on a fresh machine with Python >= 3.11 and make:
#   make demo   builds .venv and runs an LLM pipeline end to end offline (no API key needed)
#   make test   builds .venv and runs ruff, mypy and pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.lock
# The lock's tool, itself pinned so that `make lock` gives the same file on every machine.
UV_VERSION := 0.13.9
PIP := python -m pip install --quiet --disable-pip-version-check

.PHONY: demo demo-triage demo-plan test test-latest lint typecheck unit lock clean

# Every machine installs the same versions, with their hashes checked: the lock (made by
# `make lock` from pyproject's ranges) holds the dev and test tools, the examples' bm25s and
# the build backend, so stepline itself installs with no further download.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit("stepline needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) --require-hashes --no-deps -r $(LOCK)
	$(BIN)/$(PIP) --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Refresh the lock from pyproject's ranges (newest releases, for every platform and Python
# >= 3.11); commit the result. No index URL is written into it.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/$(PIP) uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml requirements/build.in --extra dev \
		--universal --python-version 3.11 --generate-hashes \
		--no-emit-index-url --no-emit-find-links --custom-compile-command 'make lock' \
		-o $(LOCK)

# The suite against the newest releases pyproject allows, in a venv of its own: what a user's
# `pip install stepline` gets today, before the lock catches up.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/$(PIP) --upgrade -e '.[dev]'
	.venv-latest/bin/python -m pip list --disable-pip-version-check | grep -iE '^(anthropic|openai|pydantic|typer|rich) '
	.venv-latest/bin/pytest -q

# The LLM steps answer from a cassette of hand-written example replies (--replay), so the demo
# needs no key and no network; drop --replay (and set ANTHROPIC_API_KEY) to ask Claude.
demo: $(STAMP)
	@run_dir=$$($(BIN)/pipeline run configs/notes-to-backlog/meeting-notes.txt \
		-c configs/notes-to-backlog/pipeline.yaml \
		--replay configs/notes-to-backlog/demo-cassette.jsonl --json \
		| $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["run_dir"])') \
	&& $(BIN)/pipeline show $$(basename $$run_dir) \
	&& echo && cat $$run_dir/outputs/summary.md \
	&& echo && cat $$run_dir/outputs/backlog.md

# ticket-triage offline: 30 tickets classified from its cassette, upserted into triage.sqlite.
demo-triage: $(STAMP)
	@run_id=$$($(BIN)/pipeline run configs/ticket-triage/tickets.jsonl \
		-c configs/ticket-triage/pipeline.yaml \
		--replay configs/ticket-triage/demo-cassette.jsonl --set database=.pipeline/triage.sqlite \
		--json \
		| $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["run_id"])') \
	&& $(BIN)/pipeline show $$run_id && $(BIN)/pipeline show $$run_id --step summary

# plan-to-code offline: a plan for a change to configs/plan-to-code/sample-repo, printed.
demo-plan: $(STAMP)
	@run_dir=$$($(BIN)/pipeline run configs/plan-to-code/task.md \
		-c configs/plan-to-code/pipeline.yaml \
		--replay configs/plan-to-code/demo-cassette.jsonl --json \
		| $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["run_dir"])') \
	&& $(BIN)/pipeline show $$(basename $$run_dir) && echo && cat $$run_dir/plan.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

clean:
	rm -rf $(VENV) .venv-lock .venv-latest .pipeline .mypy_cache .ruff_cache .pytest_cache
