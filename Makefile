# jupyter-ext: the two commands a newcomer needs are `make demo` and `make test`.
# Everything is installed into .venv (Python) and labextension/node_modules (JavaScript).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CACHE  ?= $(HOME)/.cache/jupyter-ext
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# JupyterLab refuses to start as root unless told; CI and containers often run as root.
COMMA := ,
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: demo test lint test-python test-js test-k8s test-ui test-hub bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install (the build hook runs jlpm install + build of labextension/), then the
# labextension linked into the environment so JupyterLab loads it.
define install
	$(BIN)/pip install -q "jupyterlab>=4.6,<5" "hatchling>=1.21" "hatch-jupyter-builder>=0.9" editables
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pip install -q --no-build-isolation -e ".[$(1)]"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter labextension develop --overwrite . >/dev/null
endef

$(VENV)/.installed-test: $(BIN)/python pyproject.toml labextension/package.json labextension/yarn.lock
	$(call install,test$(COMMA)examples)
	touch $@

$(VENV)/.installed-demo: $(BIN)/python pyproject.toml labextension/package.json labextension/yarn.lock
	$(call install,examples)
	touch $@

## demo: install, then start JupyterLab on examples/ with the extension (HEADLESS=1: run the example with the CLI)
demo: $(VENV)/.installed-demo
ifeq ($(HEADLESS),1)
	$(BIN)/jupyter-ext run examples/train.ipynb -p epochs 40
else
	$(BIN)/jupyter lab --notebook-dir=examples $(ROOT_FLAG)
endif

## test: install everything the tests need, then lint + every test suite (the Kubernetes
## control plane is built by scripts/k8s/build.sh, cached under ~/.cache/jupyter-ext/k8s/)
test: $(VENV)/.installed-test lint test-python test-js test-k8s test-ui test-hub

lint: $(VENV)/.installed-test
	$(BIN)/ruff check jupyter_ext tests bench
	$(BIN)/mypy
	cd labextension && PATH="$(abspath $(BIN)):$$PATH" jlpm lint

test-python: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests --ignore=tests/kubernetes --ignore=tests/hub -p no:cacheprovider

## test-k8s: the Kubernetes backend against a real control plane (kube-apiserver, scheduler,
## controller-manager built from source, etcd, KWOK nodes, a test-only process kubelet, and a real
## kubelet + containerd node running the step image built from kernels/python)
test-k8s: $(VENV)/.installed-test
	scripts/k8s/build.sh
	$(BIN)/python -m pytest tests/kubernetes -p no:cacheprovider

## test-hub: a real JupyterHub (PyPI) + configurable-http-proxy (npm, cached under $(CACHE)/chp/),
## two users' servers with the extension; jupyter_ext.hub's RBAC on the real control plane; binder/
## replayed in a fresh venv with every binder notebook run
CHP_VERSION ?= 5.3.0
test-hub: $(VENV)/.installed-test
	scripts/k8s/build.sh
	[ -x $(CACHE)/chp/$(CHP_VERSION)/node_modules/.bin/configurable-http-proxy ] || npm install --no-audit --no-fund \
	  --prefix $(CACHE)/chp/$(CHP_VERSION) configurable-http-proxy@$(CHP_VERSION)
	JUPYTER_EXT_CHP_PREFIX=$(CACHE)/chp/$(CHP_VERSION) REAL_NODE_ENABLED=0 \
	  JUPYTER_EXT_K8S_TEST_CLUSTER=$${JUPYTER_EXT_K8S_TEST_CLUSTER:-jupyter-ext-hub-pytest} \
	  $(BIN)/python -m pytest tests/hub -p no:cacheprovider

test-js: $(VENV)/.installed-test
	cd labextension && PATH="$(abspath $(BIN)):$$PATH" jlpm test

## test-ui: browser tests in Debian's Chromium driven by Playwright against a real `jupyter lab`
## (ui-tests/), and the wheel check: pip install of the built wheel into a fresh venv, listed
## enabled + OK, loaded in Chromium. Installs chromium with apt-get when /usr/bin/chromium is missing.
CHROMIUM ?= /usr/bin/chromium
test-ui: $(VENV)/.installed-test ui-tests/node_modules/.installed
	@[ -x $(CHROMIUM) ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || { echo "make test-ui: $(CHROMIUM) is missing and 'apt-get install -y chromium' failed;" \
	       "install Debian's chromium package (as root) or set CHROMIUM=/path/to/chromium" >&2; exit 1; }
	@[ -x $(CHROMIUM) ] || { echo "make test-ui: $(CHROMIUM) is still missing after installing chromium" >&2; exit 1; }
	cd ui-tests && npx tsc -p . && CHROMIUM=$(CHROMIUM) PATH="$(abspath $(BIN)):$$PATH" npx playwright test

# Playwright from npm, without its browser download (the tests use Debian's Chromium).
ui-tests/node_modules/.installed: ui-tests/package.json ui-tests/package-lock.json
	cd ui-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

## bench: latency against raw papermill and jupyter-scheduler, step parallelism, %%remote round trips
bench: $(VENV)/.installed-test
	$(BIN)/python bench/core_latency.py
	$(BIN)/python bench/steps_parallel.py
	$(BIN)/python bench/remote_latency.py
	scripts/k8s/build.sh && $(BIN)/python bench/k8s_scale.py --jobs 200
	$(BIN)/python bench/k8s_real.py --runs 10

clean:
	rm -rf $(VENV) labextension/node_modules labextension/lib jupyter_ext/labextension
	rm -rf ui-tests/node_modules ui-tests/test-results
