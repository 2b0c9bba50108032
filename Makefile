# olymp — `make help` lists the targets. Every target installs what it needs into ./.venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo_data
# Offline by default: nothing here may reach a model hub.
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.DEFAULT_GOAL := help
.PHONY: help install test demo bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install olymp with the tested package set (constraints.txt)

test: $(STAMP) ## Run the test suite (CPU; GPU tests skip themselves)
	$(BIN)/python -m pytest -q

demo: $(STAMP) ## Digits as PNGs → extract → train-head → predict, offline, printing the CV score
	$(BIN)/python -m pipelines.demo $(DEMO)
	$(BIN)/olymp extract $(DEMO)/train -o $(DEMO)/emb/train
	$(BIN)/olymp extract $(DEMO)/test -o $(DEMO)/emb/test
	$(BIN)/olymp train-head $(DEMO)/emb/train --labels $(DEMO)/train_labels.csv --head logreg -o $(DEMO)/run --overwrite
	$(BIN)/olymp predict $(DEMO)/run $(DEMO)/emb/test -o $(DEMO)/submission.csv
	$(BIN)/python -m pipelines.demo score $(DEMO)
	@echo "submission: $(DEMO)/submission.csv"

bench: $(STAMP) ## Measure extract vs forward-only vs a naive loop, and train-head vs a plain LightGBM loop
	$(BIN)/python -m pipelines.bench

clean: ## Remove the demo outputs (keeps .venv)
	rm -rf $(DEMO) .bench
