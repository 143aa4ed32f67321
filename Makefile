# Every target sets itself up from nothing: a virtual environment in .venv with
# the project installed (editable) and, for the interop tests, Microsoft's npm
# clients in tests/interop/node/node_modules.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NODEDIR := tests/interop/node

.PHONY: test demo bench clean setup

setup: $(VENV)/.stamp-install $(NODEDIR)/node_modules/.stamp

$(VENV)/.stamp-install: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

$(NODEDIR)/node_modules/.stamp: $(NODEDIR)/package.json
	cd $(NODEDIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

test: setup
	$(PY) -m pytest -p no:cacheprovider --timeout=300 tests

demo: setup
	$(PY) examples/demo.py

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(NODEDIR)/node_modules *.egg-info
