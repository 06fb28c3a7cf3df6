# mcmanager: `make run` to try it, `make test` to test it. Needs only Python 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1:8000

.PHONY: run test venv lint bench bench-restore bench-import demo clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	@touch $@

venv: $(BIN)/.installed

## run: install, migrate the embedded SQLite database, make an admin login if none, take a first backup if none, serve on $(HOST)
run: venv
	DJANGO_DEBUG=1 $(BIN)/python manage.py migrate --no-input
	DJANGO_DEBUG=1 $(BIN)/python manage.py ensure_admin --url http://$(HOST)/admin/
	DJANGO_DEBUG=1 $(BIN)/python manage.py first_backup
	DJANGO_DEBUG=1 $(BIN)/python manage.py runserver $(HOST)

## test: the whole suite on SQLite, then on PostgreSQL and MariaDB when they are reachable
test: venv
	$(BIN)/python tests/run_engines.py $(ARGS)

## demo: migrate the SQLite database of `make run` and add a small set of demo data (DEMO_ARGS to change it)
DEMO_ARGS ?= --users 200 --servers 2000 --configs 60
demo: venv
	DJANGO_DEBUG=1 $(BIN)/python manage.py migrate --no-input
	DJANGO_DEBUG=1 $(BIN)/python manage.py generate_demo_data $(DEMO_ARGS)

## bench: our commands against the engines' own tools at 1,000,000 servers; writes BENCHMARKS.md (ARGS: see bench/run.py --help);
## then restore against the engines' own tools (RESTORE_ARGS: see bench/restore.py --help)
## and import_legacy against generate_demo_data (IMPORT_ARGS: see bench/import_legacy.py --help)
bench: venv
	$(BIN)/python bench/run.py $(ARGS)
	$(BIN)/python bench/restore.py $(RESTORE_ARGS)
	$(BIN)/python bench/import_legacy.py $(IMPORT_ARGS)

## bench-restore: restore against the engines' tools alone (ARGS: see bench/restore.py --help)
bench-restore: venv
	$(BIN)/python bench/restore.py $(ARGS)

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache

## bench-import: import_legacy against generate_demo_data at 100,000 users and 1,000,000 servers (ARGS: see bench/import_legacy.py --help)
bench-import: venv
	$(BIN)/python bench/import_legacy.py $(ARGS)
