# Two commands do everything: `make demo` and `make test`. Both build the virtual environment
# from requirements.lock on first use, in a cache folder outside the clone keyed by the lock's
# hash, so every clone and every CI run on this machine reuses it.
# That shared environment holds only the dependencies: steelseg itself is never installed
# into it. Every command runs with this clone's src/ on PYTHONPATH, so two clones (or CI and a
# working copy) at different commits each import their own code.
PYTHON ?= python3
STEELSEG_CACHE ?= $(HOME)/.cache/steelseg
LOCK_HASH := $(shell sha256sum requirements.lock | cut -c1-16)
VENV := $(STEELSEG_CACHE)/venv-$(LOCK_HASH)
PY := $(VENV)/bin/python
DEMO_OUT ?= demo-output
export NO_ALBUMENTATIONS_UPDATE := 1
# PYTHONPATH is in the environment of the whole command, so processes it starts (the tests'
# `sys.executable -m steelseg`, ddp_spawn workers) import this clone's src too.
RUN := PYTHONPATH=$(CURDIR)/src NO_ALBUMENTATIONS_UPDATE=1 $(PY)

.PHONY: demo test test-slow test-all lint format bench venv venv-path where clean wheel

demo: venv
	$(RUN) -m steelseg demo --out $(DEMO_OUT)

# `make test`: every test but the heavy ones (marked slow: crash matrix, recipe sweeps, "training
# learns", DDP), on every core (pytest-xdist); under 5 minutes on 2 cores. CI runs both.
test: venv
	$(RUN) -m pytest -n auto -m "not slow"

test-slow: venv
	$(RUN) -m pytest -n auto -m slow

test-all: test test-slow

# Lint and format (ruff, one line length: 120) and the layers of the house (import-linter:
# each package imports only the ones below it; see pyproject.toml and ARCHITECTURE.md).
lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	PYTHONPATH=$(CURDIR)/src $(VENV)/bin/lint-imports --no-cache --no-logo

format: venv
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: venv
	$(RUN) benchmarks/rle_throughput.py

# The environment is complete only once its stamp exists; an interrupted build is redone.
# Older Makefiles installed steelseg editable into it (pointing at whichever clone ran last):
# such an install is removed once. The check is a directory listing, so a normal call runs no pip.
# Builds are serialised by a lock file: two clones starting at once must not delete each
# other's half-built environment.
venv:
	@mkdir -p $(STEELSEG_CACHE); exec 9>$(STEELSEG_CACHE)/.venv-$(LOCK_HASH).lock; \
	if command -v flock >/dev/null; then flock 9; fi; \
	if [ ! -f $(VENV)/.complete ]; then \
		echo "building the environment in $(VENV) (first run only: several GB)"; \
		rm -rf $(VENV) && mkdir -p $(STEELSEG_CACHE) && \
		$(PYTHON) -m venv $(VENV) && \
		$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock && \
		touch $(VENV)/.complete; \
	fi
	@if [ -n "$$(find $(VENV)/lib -mindepth 3 -maxdepth 3 \( -name 'steelseg-*.dist-info' \
			-o -name '__editable__*steelseg*' -o -name 'steelseg.egg-link' \) -print -quit)" ]; then \
		echo "removing an installed steelseg from the shared environment $(VENV)"; \
		$(PY) -m pip uninstall --quiet --yes --disable-pip-version-check steelseg \
			|| echo "warning: could not uninstall steelseg from $(VENV); this clone's src still comes first"; \
	fi

# `make wheel`: dist/steelseg-VERSION-py3-none-any.whl, built with the environment's pinned
# setuptools (no build isolation: nothing is downloaded). Install it where steelseg runs:
# pip install 'dist/steelseg-VERSION-py3-none-any.whl[serve]'.
wheel: venv
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

venv-path:
	@echo $(VENV)

# Which steelseg the environment imports from this clone (its folder, then its MARKER if any).
# No venv prerequisite: it reports what the environment imports now, without changing it.
where:
	@$(RUN) -c "import os, steelseg; print(os.path.dirname(steelseg.__file__)); print(getattr(steelseg, 'MARKER', ''))"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache build src/*.egg-info
