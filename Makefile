# django-chunkfiles: everything runs from .venv, which these targets create.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= s3,dev
# e.g. DJANGO='Django>=4.2,<5.0' for the 4.2 LTS matrix
DJANGO ?=
PYTEST_ARGS ?=

.PHONY: venv test test-postgresql test-mariadb test-browser lint demo bench bench-celery dist docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]' $(if $(DJANGO),'$(DJANGO)',)
	touch $(STAMP)

venv: $(STAMP)

## make test: the suite on SQLite, against the filesystem and a real S3 (SeaweedFS).
test: $(STAMP)
	CHUNKFILES_DB=sqlite $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)

test-postgresql: $(STAMP)
	CHUNKFILES_DB=postgresql $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)

test-mariadb: $(STAMP)
	$(PY) -c "import MySQLdb" 2>/dev/null || $(PY) -m pip install --quiet -e '.[mysql]'
	CHUNKFILES_DB=mariadb $(PY) -m pytest -m "not browser" $(PYTEST_ARGS)

## needs Debian's chromium (apt-get install chromium chromium-driver)
test-browser: $(STAMP)
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy chunkfiles
	$(PY) manage.py makemigrations --check --dry-run

## make demo: sample data on SQLite + filesystem, admin on http://127.0.0.1:8000/admin/
## make demo S3=1: the same against a local SeaweedFS S3 started for the demo.
## PORT=8123 serves elsewhere (PORT=0: any free port); the URL served is printed.
PORT ?= 8000
demo: $(STAMP)
ifeq ($(S3),1)
	$(PY) -m testproject.serve_s3 --port $(PORT)
else
	$(PY) manage.py migrate --verbosity 0
	$(PY) -m testproject.demo --serve 127.0.0.1:$(PORT)
endif

## make bench: SeaweedFS behind a latency proxy; QUICK=1 for the small version (CI).
## Fails only on wrong bytes or a crash; BENCH_ARGS="--strict" fails on missed counts too.
bench: $(STAMP)
	$(PY) -m benchmarks.run $(if $(filter 1,$(QUICK)),--quick,) $(BENCH_ARGS)

## make bench-celery: bulk verify and export in one process, on 1 and on 2 Celery
## workers (files/s; README "Bulk jobs on Celery"). Needs PostgreSQL on 127.0.0.1:5432
## (user postgres) and Redis on 127.0.0.1:6379. BENCH_ARGS="--celery-files 300 --runs 1".
bench-celery: $(STAMP)
	$(PY) -m benchmarks.run --suites celery $(BENCH_ARGS)

## make dist: the sdist and the wheel in dist/ (.ci/dist-smoke checks and installs them).
dist: $(STAMP)
	rm -rf dist build
	$(PY) -m build --outdir dist .

## make docs: the Sphinx site in docs/_build/html; warnings are errors. -E: pages
## generated from code are never served stale from the last build.
docs: $(STAMP)
	$(PY) -c "import sphinx, furo" 2>/dev/null || $(PY) -m pip install --quiet -e '.[docs]'
	$(PY) -m sphinx -E -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .hypothesis *.egg-info dist build docs/_build
