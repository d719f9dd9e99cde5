# Arbiter: `make run` starts the app with a demo; `make test` runs the whole test suite.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
# The data folder settings.py uses (ARBITER_DATA_DIR, default ./var).
DATA_DIR := $(or $(ARBITER_DATA_DIR),var)
FRONTEND_SRC := $(shell find frontend/src -type f 2>/dev/null) frontend/vite.config.ts frontend/tsconfig.json

.PHONY: run test test-sqlite test-postgres install frontend lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,training]'
	touch $@

install: $(VENV)/.installed

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend/dist/.built: frontend/node_modules/.installed $(FRONTEND_SRC)
	cd frontend && npm run build
	touch $@

frontend: frontend/dist/.built

run: install frontend
	@# This installation's secret key (DATA_DIR/secret_key, mode 0600), made once, unless
	@# ARBITER_SECRET_KEY is set; without a key, Arbiter refuses to start (config/secret_key.py).
	@test -n "$$ARBITER_SECRET_KEY" || $(PY) -m config.secret_key "$(DATA_DIR)"
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py seed_demo
	@# Tiny local models under the default model root, so the demo can train a reward model and PPO.
	test -f $(DATA_DIR)/models/tiny-causal-lm/config.json || $(PY) manage.py build_tiny_models $(DATA_DIR)/models
	$(PY) manage.py run_arbiter

test: install frontend
	./scripts/ensure-services.sh
	$(VENV)/bin/lint-imports --no-cache
	cd frontend && npm test
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite:
	$(PY) -m pytest

test-postgres:
	DATABASE_URL=$(PG_URL) $(PY) -m pytest -m "not browser"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist var
