# Everything a person or CI runs. `make demo` and `make test` install what they need first.
PY ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
# sam build needs the functions' runtime (python3.12) on PATH. pyenv's real bin folder, not its shim:
# the shim hangs sam's pip when 3.12 is not pyenv's selected version.
PY312_DIR := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/) $(dir $(shell command -v python3.12 2>/dev/null)))
export SAM_CLI_TELEMETRY := 0
PIP_QUIET := --quiet --disable-pip-version-check
MOTO_PORT ?= 5000
API_PORT ?= 3000

.PHONY: demo local invoke deploy test unit integration infrastructure lint typecheck build bench simulate clean browser

$(BIN)/.installed: requirements-dev.txt layers/shared/requirements.txt functions/intake/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) -r requirements-dev.txt
	$(BIN)/pip install $(PIP_QUIET) --no-deps -e .
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PY) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_QUIET) -r requirements-sam.txt
	touch $@

# checkov pins an old boto3 that clashes with aws-sam-cli: it gets a venv of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install $(PIP_QUIET) -r requirements-checkov.txt
	touch $@

demo: $(BIN)/.installed  ## the whole system on moto: sample tasks end to end, checked
	$(BIN)/python -m local_stack demo

local: $(BIN)/.installed  ## the same stack, kept up; writes .local/env (MOTO_PORT=, API_PORT=, LOCAL_ARGS=--compact)
	$(BIN)/python -m local_stack local --moto-port $(MOTO_PORT) --api-port $(API_PORT) $(LOCAL_ARGS)

invoke: $(BIN)/.installed  ## sam local invoke without Docker, against `make local`: make invoke FN=router EVENT=events/router_worker_task.json
	$(BIN)/python -m local_stack invoke $(FN) -e $(EVENT)

test: lint browser  ## static checks, then every test
	$(BIN)/python -m pytest

# The console's browser tests drive Debian's chromium (never a browser download).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium chromium-driver)

unit: $(BIN)/.installed
	$(BIN)/python -m pytest -m unit

integration: $(BIN)/.installed browser
	$(BIN)/python -m pytest -m integration

infrastructure: $(BIN)/.installed
	$(BIN)/python -m pytest -m infrastructure

lint: $(BIN)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck
	$(BIN)/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --region us-east-1
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1
	$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --skip-download --quiet --compact

# mypy (pyproject.toml: strict on the layer's mistersmith package); each function on its own, since
# every one has an app.py and imports its sibling modules by name, as Lambda runs it.
typecheck: $(BIN)/.installed
	$(BIN)/mypy
	for function in functions/*/; do MYPYPATH=$$function $(BIN)/mypy --no-warn-unused-configs $$function || exit 1; done

$(BIN)/.bench-installed: requirements-bench.txt $(BIN)/.installed
	$(BIN)/pip install $(PIP_QUIET) -r requirements-bench.txt
	touch $@

bench: $(BIN)/.bench-installed  ## the worker's cost per task beside a bare receive/delete loop, in memory and on moto; beside Celery on SQS (throughput, memory, latency); intake cold start beside a Powertools resolver; an execute task's RUNNING -> SUCCEEDED beside subprocess.run; analyze on 5 MB beside the old analyzer; p95 DELETE -> CANCELLED of a running task; writes each output and the goals into README.md
	$(BIN)/python -m bench --write-readme

simulate: $(BIN)/.installed  ## the scaling goal per profile and seed (PASS/FAIL), the plot; writes the goal table into README.md and docs/scaling.md
	$(BIN)/python -m simulator --write-tables

build: $(BIN)/.installed $(SAM_VENV)/.installed  ## sam build, then import every handler from its build folder
	PATH="$(PY312_DIR):$$PATH" $(SAM_VENV)/bin/sam build
	PATH="$(PY312_DIR):$$PATH" $(BIN)/python scripts/check_build.py

# ENV=prod deploys samconfig's [prod]; DRY_RUN=1 prints the plan. Needs Docker, AWS credentials, a region.
deploy: $(BIN)/.installed $(SAM_VENV)/.installed  ## worker image to ECR, sam build, sam deploy with it (docs/deploy.md)
	PATH="$(PY312_DIR):$$PATH" SAM="$(abspath $(SAM_VENV))/bin/sam" $(BIN)/python scripts/deploy.py $(if $(filter-out dev,$(ENV)),--config-env $(ENV)) $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf .aws-sam .local
