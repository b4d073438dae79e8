# Two entry points for a fresh machine: `make demo` and `make test`.
# Installs go through uv (installed with pip if absent); `pip install -e '.[dev]'` works as well.
# --compile-bytecode: uv, unlike pip, writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is
# set (this machine sets it) every process would compile each module it imports, every time: ~11 CPU-s
# to import mlflow, pandas, gradio and streamlit from source against ~5 from .pyc. Compiling once at
# install costs ~20 s of wall time (both cores); the suite starts dozens of such processes.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
UV     := $(shell command -v uv 2>/dev/null || echo $(PYTHON) -m uv)

.PHONY: setup demo test test-sdk-range lint bench chromium java postgres uv

# The lowest databricks-sdk pyproject.toml allows; the main venv has the highest.
SDK_MIN     := 0.58.0
VENV_SDKMIN := .venv-sdk-min
AUTH_SUITES := tests/test_auth.py tests/test_workspace_e2e.py tests/test_token_lifecycle.py

# uv itself, from PyPI, when it is not on PATH (then run as `python3 -m uv`).
uv:
	@command -v uv >/dev/null || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv

$(PY): | uv
	$(UV) venv -q --python $(PYTHON) $(VENV)

# The apps and the SDK only: what `make demo` needs.
$(VENV)/.apps: pyproject.toml | $(PY)
	$(UV) pip install -q --compile-bytecode -p $(PY) -e '.[apps]'
	touch $@

# Everything `make test` and `make lint` need.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(UV) pip install -q --compile-bytecode -p $(PY) -e '.[dev]'
	touch $@ $(VENV)/.apps

setup: $(VENV)/.installed

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's OpenJDK 17 for pyspark 4 (tests/test_spark.py runs Spark in local mode).
java:
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

# Debian's PostgreSQL for the chat-history tests (they start a throwaway cluster: tests/_postgres.py).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }

# Register the demo model and the demo agent in the local registry and open the Streamlit app: the iris
# form, and a Chat tab on the agent whose conversations are kept in .predictor/history.db (SQLite, the
# history's laptop default: frontends/core/history.py).
DEMO_CHAT_MODEL := models:/main.default.assistant@champion

demo: $(VENV)/.apps
	$(VENV)/bin/predictor demo
	PREDICTOR_CHAT_MODEL_URI=$(DEMO_CHAT_MODEL) $(VENV)/bin/streamlit run frontends/streamlit_ui/server.py

SDK_RANGE_ARGS ?=

# Two pytest-xdist workers on the 2 cores. Three were tried: 9 min 42 s once, 12-13 min on busier runs,
# and on 2026-12-03's fresh machine 18 min 26 s, with three timing-bound tests red from the contention (and
# 2026-12-04, quiet: 9 % done after 9 min, stopped). Two workers and the third lane below: 7:50-17:34 by the hour before .pyc were compiled at install, 9:50 after (2026-12-05 01:08)
# (README, "Where the suite's time goes": the cores are busy throughout). A module
# stays on one worker (--dist loadfile), so its module-scoped apps and browser start once. Modules go
# out in collection order (tests/conftest.py puts the longest first), not xdist's default of most
# tests first. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
PYTEST_ARGS    := -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# --durations=20: where the time goes (README, "Where the suite's time goes").
# A third lane, in one process of its own beside the two workers: the lowest-SDK run, then the
# modules that mostly wait (stalled and refused requests, back-off, the tracing queue, servers
# answering): measured 5-36 % of a core over their run (2026-12-04), so they fill time the two
# workers leave the cores idle, and the workers lose ~175 s of their modules. Its own --basetemp,
# so the two pytest processes never clean up each other's temporary directories. Its output
# follows the main run's; any lane failing fails `make test`.
WAITING    := tests/test_faults.py tests/test_tracing.py tests/test_monitoring_e2e.py tests/test_feedback.py
BESIDE_LOG := test-artifacts/beside.log

# compileall: the project's own modules as .pyc too, for the same reason as --compile-bytecode above
# (~1 CPU-s to compile them all, paid again by every process that imports them; seconds, once, here).
test: setup chromium java postgres
	@$(PY) -m compileall -q client frontends tests
	@mkdir -p $(dir $(BESIDE_LOG))
	@{ $(MAKE) --no-print-directory test-sdk-range PYTEST_WORKERS=0 SDK_RANGE_ARGS=--basetemp=test-artifacts/sdk-range-tmp; \
	   lowest=$$?; $(PY) -m pytest -q -p no:cacheprovider --basetemp=test-artifacts/waiting-tmp --durations=5 $(WAITING); \
	   waiting=$$?; test $$lowest -eq 0 -a $$waiting -eq 0; } >$(BESIDE_LOG) 2>&1 & beside=$$!; \
	$(PY) -m pytest $(PYTEST_ARGS) --durations=20 $(addprefix --ignore=,$(WAITING)); main=$$?; \
	wait $$beside; third=$$?; echo "== the third lane: make test-sdk-range, then $(WAITING)"; cat $(BESIDE_LOG); \
	test $$main -eq 0 -a $$third -eq 0

# The auth suites again against the lowest databricks-sdk we claim (a second venv; uv: seconds). Only the
# `tests` extra: no pyspark, whose sdist uv builds again per venv (~20 s of CPU beside the main run).
test-sdk-range: $(VENV_SDKMIN)/.installed
	$(VENV_SDKMIN)/bin/python -m pytest $(PYTEST_ARGS) $(SDK_RANGE_ARGS) $(AUTH_SUITES)

$(VENV_SDKMIN)/.installed: pyproject.toml | uv
	$(UV) venv -q --allow-existing $(VENV_SDKMIN)
	$(UV) pip install -q --compile-bytecode -p $(VENV_SDKMIN)/bin/python -e '.[tests]' 'databricks-sdk==$(SDK_MIN)'
	touch $@

lint: setup
	$(VENV)/bin/ruff check client frontends tests
	$(VENV)/bin/mypy
