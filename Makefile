# Two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/smsdesk
SQLITE_URL ?= sqlite:///smsdesk.sqlite3

.PHONY: run install test test-sqlite test-postgres postgres chromium wrk lint bench-smoke clean

run: install
	$(BIN)/smsdesk serve

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Lint and types, then both databases, every time.
test: install chromium wrk postgres
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install
	DATABASE_URL=$(SQLITE_URL) $(BIN)/pytest -p no:cacheprovider

test-postgres: install postgres
	DATABASE_URL=$(PG_URL) $(BIN)/pytest -p no:cacheprovider

# The machines ship PostgreSQL; start it if it is stopped.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@pg_isready -h 127.0.0.1 -p 5432

# The benchmarks' load generator (the bench smoke test runs it).
wrk:
	@command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }

# Browser tests drive Debian's Chromium through Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

lint: install
	$(BIN)/ruff check smsdesk tests bench
	$(BIN)/ruff format --check smsdesk tests bench
	$(BIN)/mypy smsdesk

# A seconds-long run of every benchmark on SQLite, to keep bench/ working; it
# checks that nothing acknowledged is lost, not how fast (docs/performance.md).
# wrk is the load generator: a C event loop leaves the 2 cores to the server.
bench-smoke: install wrk
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
