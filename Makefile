# Every target sets itself up from nothing: a virtual environment in .venv with
# the project installed (editable) and, for the interop tests, Microsoft's npm
# clients in tests/interop/node/node_modules.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NODEDIR := tests/interop/node

.PHONY: test test-oldest test-crossbar demo bench soak clean setup

setup: $(VENV)/.stamp-install $(NODEDIR)/node_modules/.stamp debian-tools

$(VENV)/.stamp-install: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench,cluster]'
	touch $@

$(NODEDIR)/node_modules/.stamp: $(NODEDIR)/package.json
	cd $(NODEDIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

# Real servers the tests start themselves on loopback ports, from Debian's
# packages (as root on Debian), in one apt run for whatever is missing:
# Chromium and its chromedriver (the browser tests: Selenium is given both paths
# and never downloads a browser), tinyproxy (the HTTP CONNECT proxy tests), and
# redis-server and haproxy (the relay cluster's tests, examples/cluster and the
# cluster benchmarks). `make browser`, `make tinyproxy` and `make cluster-tools`
# are the same target.
DEBIAN_TOOLS := /usr/bin/chromium=chromium /usr/bin/chromedriver=chromium-driver \
                /usr/bin/tinyproxy=tinyproxy /usr/bin/redis-server=redis-server /usr/sbin/haproxy=haproxy
.PHONY: debian-tools browser tinyproxy cluster-tools
browser tinyproxy cluster-tools: debian-tools
debian-tools:
	@missing=""; for tool in $(DEBIAN_TOOLS); do \
	  [ -x "$${tool%%=*}" ] || missing="$$missing $${tool#*=}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

test: setup
	$(PY) -m pytest -p no:cacheprovider --timeout=300 --ignore=tests/crossbar tests

# The oldest Twisted, Autobahn, h11, pyOpenSSL and service-identity that
# setup.py allows, exactly (tests/oldest-constraints.txt), in a venv of their
# own: the whole suite, as `make test` runs it.
OLD_VENV := .venv-oldest
OLD_PY   := $(OLD_VENV)/bin/python

$(OLD_VENV)/.stamp-install: setup.py tests/oldest-constraints.txt
	$(PYTHON) -m venv $(OLD_VENV)
	$(OLD_PY) -m pip install --quiet --upgrade pip
	$(OLD_PY) -m pip install --quiet -c tests/oldest-constraints.txt -e '.[test,bench,cluster]'
	touch $@

test-oldest: $(OLD_VENV)/.stamp-install $(NODEDIR)/node_modules/.stamp debian-tools
	$(OLD_PY) -m pytest -p no:cacheprovider --timeout=300 --ignore=tests/crossbar tests

# Crossbar pulls in ~100 packages (web3 among them), so it gets a venv of its
# own and only tests/crossbar runs there; `make test` ignores that directory.
CB_VENV := .venv-crossbar
CB_PY   := $(CB_VENV)/bin/python
CROSSBAR_VERSION ?= 26.10.1

$(CB_VENV)/.stamp-install: setup.py
	$(PYTHON) -m venv $(CB_VENV)
	$(CB_PY) -m pip install --quiet --upgrade pip
	$(CB_PY) -m pip install --quiet -e '.[test]' 'crossbar==$(CROSSBAR_VERSION)'
	touch $@

test-crossbar: $(CB_VENV)/.stamp-install
	$(CB_PY) -m pytest -p no:cacheprovider --timeout=300 tests/crossbar

# The demo needs only Python; the benchmarks add Node's hyco-ws and hyco-https, not the browser.
demo: $(VENV)/.stamp-install
	$(PY) examples/demo.py

bench: $(VENV)/.stamp-install $(NODEDIR)/node_modules/.stamp debian-tools
	$(PY) benchmarks/run.py

# Not in CI: 1,000 relayed connections for three minutes while listeners come
# and go; writes benchmarks/results/soak.json and fails if a check fails.
soak: $(VENV)/.stamp-install
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) $(OLD_VENV) $(CB_VENV) $(NODEDIR)/node_modules *.egg-info
