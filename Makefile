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

.PHONY: demo test lint test-python test-js test-k8s test-ui test-hub bench clean dist screenshots \
	chromium tree-snapshot check-clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install (the build hook runs jlpm install + `jlpm install:extension` in labextension/),
# then the labextension linked into the environment so JupyterLab loads it (jupyter-builder, which
# jupyterlab brings, replaces the deprecated `jupyter labextension develop`). The build requirements
# are pyproject.toml's [build-system] ones.
BUILD_REQS := "jupyterlab>=4.6,<5" "hatchling>=1.27" "hatch-jupyter-builder>=0.9" "hatch-nodejs-version>=0.3.2"
define install
	$(BIN)/pip install -q $(BUILD_REQS) editables
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pip install -q --no-build-isolation -e ".[$(1)]"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/jupyter-builder develop --overwrite . >/dev/null
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
## control plane is built by scripts/k8s/build.sh, cached under ~/.cache/jupyter-ext/k8s/), then
## check that the tests left the working tree as they found it (clean, in a fresh clone)
test: tree-snapshot $(VENV)/.installed-test lint test-python test-js test-k8s test-ui test-hub
	$(MAKE) --no-print-directory check-clean

# What `git status` shows when `make test` starts (scripts/tree_state.py); check-clean compares.
TREE_STATE := build/tree-state-before-test
tree-snapshot:
	@mkdir -p $(dir $(TREE_STATE)) && $(PYTHON) scripts/tree_state.py save $(TREE_STATE)

## check-clean: fail if the working tree differs from the snapshot `make test` took at its start
## (without one: if `git status --porcelain` shows anything); what tests make belongs in .gitignore
check-clean:
	@$(PYTHON) scripts/tree_state.py check $(TREE_STATE)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check jupyter_ext tests bench scripts/check_dist.py scripts/tree_state.py
	$(BIN)/mypy
	cd labextension && PATH="$(abspath $(BIN)):$$PATH" jlpm lint:check

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
## (ui-tests/), and the wheel check: the release build (`make dist`) pip-installed into a fresh
## venv, listed enabled + OK, loaded in Chromium, running a job. Installs chromium with apt-get when /usr/bin/chromium is missing.
CHROMIUM ?= /usr/bin/chromium
test-ui: $(VENV)/.installed-test ui-tests/node_modules/.installed chromium
	cd ui-tests && npx tsc -p . && CHROMIUM=$(CHROMIUM) PATH="$(abspath $(BIN)):$$PATH" npx playwright test

## screenshots: retake docs/images/*.png (the README's) with the browser scenarios that take them;
## only this writes them (JUPYTER_EXT_SCREENSHOTS=1), a test run does not
SCREENSHOT_SPECS = $(shell grep -lF 'await screenshot' ui-tests/tests/*.spec.ts | sed 's|^ui-tests/||')
screenshots: $(VENV)/.installed-test ui-tests/node_modules/.installed chromium
	cd ui-tests && npx tsc -p . && JUPYTER_EXT_SCREENSHOTS=1 CHROMIUM=$(CHROMIUM) \
	  PATH="$(abspath $(BIN)):$$PATH" npx playwright test $(SCREENSHOT_SPECS)
	git status --short docs/images

chromium:
	@[ -x $(CHROMIUM) ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
	  || { echo "make: $(CHROMIUM) is missing and 'apt-get install -y chromium' failed;" \
	       "install Debian's chromium package (as root) or set CHROMIUM=/path/to/chromium" >&2; exit 1; }
	@[ -x $(CHROMIUM) ] || { echo "make: $(CHROMIUM) is still missing after installing chromium" >&2; exit 1; }

## dist: the release build into $(DIST)/: the sdist from a clean copy of the tree (the files git
## would commit), the wheel from that sdist with the production labextension, `twine check`, the
## wheel's files against scripts/check_dist.py's allow-list (scripts/dist.sh; DIST_NO_ISOLATION=1
## builds with .venv's packages instead of isolated environments from PyPI)
DIST ?= dist
dist: $(VENV)/.installed-dist
	PYTHON=$(abspath $(BIN))/python scripts/dist.sh $(DIST)

$(VENV)/.installed-dist: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "build>=1.2" "twine>=6.1" $(BUILD_REQS)
	touch $@

# Playwright from npm, without its browser download (the tests use Debian's Chromium).
ui-tests/node_modules/.installed: ui-tests/package.json ui-tests/package-lock.json
	cd ui-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $@

## bench: issue 14's table (jupyter-scheduler and raw papermill measured in the same run: latency,
## bursts, CLI, %%remote, chain gaps, diamond, GET jobs at 1k/10k jobs, memory), then the 100 MB
## hand-off and the Kubernetes benchmarks. `make bench BENCH_ARGS=--quick` for a short table.
BENCH_ARGS ?=
bench: $(VENV)/.installed-test
	$(BIN)/python bench/table.py $(BENCH_ARGS)
	$(BIN)/python bench/steps_parallel.py
	scripts/k8s/build.sh && $(BIN)/python bench/k8s_scale.py --jobs 200
	$(BIN)/python bench/k8s_real.py --runs 10

clean:
	rm -rf $(VENV) labextension/node_modules labextension/lib jupyter_ext/labextension jupyter_ext/_version.py
	rm -rf ui-tests/node_modules ui-tests/test-results dist build
