# Two commands do all set-up on a fresh machine with Python >= 3.11 and make:
#   make demo   builds .venv and runs an LLM pipeline end to end offline (no API key needed)
#   make test   builds .venv and runs ruff, mypy and pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-triage demo-plan test lint typecheck unit clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("stepline needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

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
	rm -rf $(VENV) .pipeline .mypy_cache .ruff_cache .pytest_cache
