# The two commands of the README: `make study` and `make test`. Both do all set-up.
# Set-up is idempotent: a stamp file in .venv records a finished install.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dynaprune-installed
# datasets live under $DYNAPRUNE_DATA if set, else data/ (the library reads the same variable)
DATA_ROOT := $(or $(DYNAPRUNE_DATA),data)
DATA   := $(DATA_ROOT)/FashionMNIST/raw/train-images-idx3-ubyte
# empty: the committed profile (dynaprune.profiles.COMMITTED); e.g. `make study PROFILE=quick`
PROFILE ?=
PROFILE_ARG := $(if $(PROFILE),--profile $(PROFILE))

.PHONY: setup data study test test-fast lab clean-venv bench book browser gpu-data gpu-check

setup: $(STAMP)

# pip's log goes to .venv/pip.log and is shown only if the install fails
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing into $(VENV) (log: $(VENV)/pip.log) ..."
	@# torch/torchvision first and pinned: pip takes them from the machine's wheel store (see docs/setup.md).
	@$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 > $(VENV)/pip.log 2>&1 && \
	  $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' >> $(VENV)/pip.log 2>&1 || \
	  { tail -n 40 $(VENV)/pip.log; exit 1; }
	@touch $@
	@echo "[setup] done"

data: $(DATA)

$(DATA): | $(STAMP)
	@$(PY) -m dynaprune.data prepare fashion_mnist --root $(DATA_ROOT)

study: $(STAMP) $(DATA)
	@$(PY) -m dynaprune.study $(PROFILE_ARG)

test: $(STAMP) $(DATA) browser
	@$(PY) -m pytest -n 2 tests

# the edit loop's tier (about a minute): unit and property tests, without the notebooks, the render guard, torchrun,
# the examples and the other tests marked slow; `make test` (and CI) runs everything
test-fast: $(STAMP) $(DATA)
	@$(PY) -m pytest -n 2 -m "not slow" tests

# The site's browser test (tests/test_notebooks.py) opens the pages in headless Chromium with offline MathJax: Debian's
# chromium, chromium-driver and libjs-mathjax, installed here when we are root on Debian; without them the browser part
# of the test is skipped and says why.
BROWSER_PKGS := /usr/bin/chromium /usr/bin/chromedriver /usr/share/javascript/mathjax/MathJax.js
browser:
	@for f in $(BROWSER_PKGS); do test -e $$f || missing=1; done; test -z "$$missing" || \
	  { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver libjs-mathjax >/dev/null 2>&1 && \
	    echo "[browser] installed Debian's chromium, chromium-driver and libjs-mathjax"; } || \
	  echo "[browser] Debian's chromium / chromium-driver / libjs-mathjax are not installed: the site's browser test will be skipped"

# The course site in build/book/ (open build/book/index.html): Sphinx + MyST-NB + sphinx-book-theme +
# sphinxcontrib-bibtex over the notebooks executed from the committed cache. MathJax comes from Debian's
# libjs-mathjax, installed here when we are root on Debian; without it pages use MathJax's CDN.
book: $(STAMP) $(DATA)
	@test -f /usr/share/javascript/mathjax/MathJax.js || { test "$$(id -u)" = 0 && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libjs-mathjax >/dev/null 2>&1; } || \
	  echo "[book] Debian's libjs-mathjax is not installed: the pages will load MathJax from its CDN"
	@$(PY) -m dynaprune.book $(PROFILE_ARG)

# The study's first GPU runs (docs/setup.md): `make gpu-data` packs what travels to a GPU machine; `make gpu-check`
# runs the gpu-mini profile and the GPU speed table there (it stops clearly without CUDA).
gpu-data: $(STAMP) $(DATA)
	@$(PY) -m dynaprune.gpu_check --pack

gpu-check: $(STAMP) $(DATA)
	@$(PY) -m dynaprune.gpu_check

bench: $(STAMP)
	$(PY) -m dynaprune.bench

# JupyterLab refuses to start as root (most containers) unless told --allow-root.
lab: $(STAMP) $(DATA)
	$(VENV)/bin/jupyter lab notebooks/ --config=.jupyter/jupyter_server_config.py $$(test "$$(id -u)" = 0 && echo --allow-root)

clean-venv:
	rm -rf $(VENV)
