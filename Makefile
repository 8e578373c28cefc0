# The two commands of the README:
#   make demo   set up a fresh machine and run the whole workflow on the embedded demo corpus
#   make test   run the test suite
VENV ?= .venv
CORES ?= 2
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test test-fast clean

setup:
	./scripts/setup.sh

demo: setup
	snakemake --profile profiles/local --cores $(CORES)

test: setup
	python -m pytest -q -p no:cacheprovider

test-fast: setup
	python -m pytest -q -m "not slow"

clean:
	rm -rf results logs .snakemake
