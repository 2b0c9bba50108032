# olymp — `make help` lists the targets. Every target installs what it needs into ./.venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo_data
# `make smoke OLYMP="python -m cli.app"` runs a source checkout without installing it.
OLYMP ?= $(BIN)/olymp
# Offline by default: nothing here may reach a model hub.
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help install path-note test smoke faults demo demo-images demo-audio bench eval clean

# Colour only on a terminal (and not under NO_COLOR): `make help | less` and logs get plain text.
help: ## List the targets
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -v on="$$on" -v off="$$off" 'BEGIN{FS=":.*## "}{printf "  %s%-12s%s %s\n", on, $$1, off, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install olymp with the tested package set (constraints.txt)
	@$(MAKE) --no-print-directory path-note

# How to call `olymp` by name: the venv's bin folder is not on PATH until it is activated.
path-note:
	@echo "olymp is installed in $(CURDIR)/$(VENV). To call it as \`olymp\` in this shell:"
	@echo "    source $(CURDIR)/$(BIN)/activate     # then: olymp --version"
	@echo "or call it by path: $(CURDIR)/$(BIN)/olymp"

test: $(STAMP) ## Run the test suite (CPU; GPU tests skip themselves), then `make faults` and `make smoke`
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory faults
	$(MAKE) --no-print-directory smoke

faults: $(STAMP) ## Fault script: kill -9 at many points of extract/train-head/predict/run, a full disk; prints its counts (~4 min on 2 cores)
	OLYMP_FAULTS=1 $(BIN)/python -m pytest -m faults -s -q -p no:cacheprovider tests/test_faults.py

smoke: $(STAMP) ## The whole chain (olymp run --smoke) on the demo digits and sounds: tiny subsample, 2 folds, CPU
	$(BIN)/python -m pipelines.devtools.demo $(DEMO)
	$(BIN)/python -m pipelines.devtools.demo sounds $(DEMO)/sounds
	$(OLYMP) run configs/examples/digits.toml --smoke --set extract.device=cpu
	$(OLYMP) run configs/examples/sounds.toml --smoke --set extract.device=cpu

demo: demo-images demo-audio ## Both demos below, offline, each printing its CV score and submission
	@$(MAKE) --no-print-directory path-note

demo-images: $(STAMP) ## Digits as PNGs → extract → train-head → predict (offline default backbone)
	$(BIN)/python -m pipelines.devtools.demo $(DEMO)
	# embeddings where configs/examples/digits.toml's chain (output demo_data/chain) resumes them
	$(BIN)/olymp extract $(DEMO)/train -o $(DEMO)/chain/emb/train
	$(BIN)/olymp extract $(DEMO)/test -o $(DEMO)/chain/emb/test
	$(BIN)/olymp train-head $(DEMO)/chain/emb/train --labels $(DEMO)/train_labels.csv --head logreg -o $(DEMO)/run --overwrite
	$(BIN)/olymp predict $(DEMO)/run $(DEMO)/chain/emb/test -o $(DEMO)/submission.csv
	$(BIN)/python -m pipelines.devtools.demo score $(DEMO)
	@echo "submission: $(DEMO)/submission.csv"

demo-audio: $(STAMP) ## Synthetic sound classes (wav/flac/ogg, mixed rates) → extract → train-head → predict
	$(BIN)/python -m pipelines.devtools.demo sounds $(DEMO)/sounds
	$(BIN)/olymp extract $(DEMO)/sounds/train -o $(DEMO)/sounds/emb/train
	$(BIN)/olymp extract $(DEMO)/sounds/test -o $(DEMO)/sounds/emb/test
	$(BIN)/olymp train-head $(DEMO)/sounds/emb/train --labels $(DEMO)/sounds/train_labels.csv --head logreg -o $(DEMO)/sounds/run --overwrite
	$(BIN)/olymp predict $(DEMO)/sounds/run $(DEMO)/sounds/emb/test -o $(DEMO)/sounds/submission.csv
	$(BIN)/python -m pipelines.devtools.demo score $(DEMO)/sounds
	@echo "submission: $(DEMO)/sounds/submission.csv"

bench: $(STAMP) ## Throughput per backbone: model-only, decode limit, extract (CPU / GPU decode); audio; train-head (.bench/results.csv)
	$(BIN)/python -m pipelines.devtools.bench

eval: $(STAMP) ## Quality benchmark on ../shared/devdata (CIFAR-10 subset, ESC-10): OOF accuracy per route x head vs a hand probe (.bench/eval/results.csv); skips when absent
	$(BIN)/python scripts/eval.py

clean: ## Remove the demo outputs (keeps .venv)
	rm -rf $(DEMO) .bench
