# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make run    install what is needed, then train all eight tutorial variants into mlruns/
#   make test   install what is needed, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test ui bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m src.train -m 'experiment=glob(*)'

test: $(STAMP)
	$(BIN)/python -m pytest

ui: $(STAMP)  # prints the address that opens the experiment on its runs
	@$(BIN)/python -m src.report.mlflow_ui --base http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

bench: $(STAMP)  # every benchmark in benchmarks/
	for script in benchmarks/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV)
