# The two commands a new user needs: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfpipe run examples/penguin/pipeline.py
	$(BIN)/tfpipe runs list

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^tfpipe' > constraints.txt.new
	(echo "# Lock file: exact versions measured to install and run together (make lock)."; cat constraints.txt.new) > constraints.txt
	rm constraints.txt.new

clean:
	rm -rf .tfpipe bench_out
