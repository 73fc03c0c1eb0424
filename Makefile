# Two commands do everything: `make demo` and `make test`. Both build the virtual environment
# from requirements.lock on first use, in a cache folder outside the clone keyed by the lock's
# hash, so every clone and every CI run on this machine reuses it.
PYTHON ?= python3
STEELSEG_CACHE ?= $(HOME)/.cache/steelseg
LOCK_HASH := $(shell sha256sum requirements.lock | cut -c1-16)
VENV := $(STEELSEG_CACHE)/venv-$(LOCK_HASH)
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-output
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test test-fast bench venv venv-path clean

demo: venv
	$(VENV)/bin/steelseg demo --out $(DEMO_OUT)

test: venv
	$(PY) -m pytest

test-fast: venv
	$(PY) -m pytest -m "not slow"

bench: venv
	$(PY) benchmarks/rle_throughput.py

# The environment is complete only once its stamp exists; an interrupted build is redone.
# The package itself is installed editable on every call (seconds) so the cached environment
# always points at the clone that runs it.
venv:
	@if [ ! -f $(VENV)/.complete ]; then \
		echo "building the environment in $(VENV) (first run only: several GB)"; \
		rm -rf $(VENV) && mkdir -p $(STEELSEG_CACHE) && \
		$(PYTHON) -m venv $(VENV) && \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock && \
		touch $(VENV)/.complete; \
	fi
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
		|| { echo "could not install steelseg into $(VENV)"; exit 1; }

venv-path:
	@echo $(VENV)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build src/*.egg-info
