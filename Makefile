# Two entry points for a fresh machine: `make demo` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup demo test test-sdk-range lint bench chromium java

# The lowest databricks-sdk pyproject.toml allows; the main venv has the highest.
SDK_MIN     := 0.58.0
VENV_SDKMIN := .venv-sdk-min
AUTH_SUITES := tests/test_auth.py tests/test_workspace_e2e.py tests/test_token_lifecycle.py

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's OpenJDK 17 for pyspark 4 (tests/test_spark.py runs Spark in local mode).
java:
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

# Register the demo model in the local registry and open the Streamlit app on it.
demo: setup
	$(VENV)/bin/predictor demo
	$(VENV)/bin/streamlit run frontends/streamlit_app.py

test: setup chromium java
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) test-sdk-range

# The auth suites again against the lowest databricks-sdk we claim (a second venv; uv: seconds).
test-sdk-range: $(VENV_SDKMIN)/.installed
	$(VENV_SDKMIN)/bin/python -m pytest -q -p no:cacheprovider $(AUTH_SUITES)

$(VENV_SDKMIN)/.installed: pyproject.toml
	uv venv -q --allow-existing $(VENV_SDKMIN)
	uv pip install -q -p $(VENV_SDKMIN)/bin/python -e '.[dev]' 'databricks-sdk==$(SDK_MIN)'
	touch $@

lint: setup
	$(VENV)/bin/ruff check client frontends tests
	$(VENV)/bin/mypy
