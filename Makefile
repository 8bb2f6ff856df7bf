# The two README commands. Each creates and fills its own virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.deepnet-installed

.PHONY: train test lint clean

train: $(STAMP)
	$(BIN)/deepnet train

test: $(STAMP)
	$(BIN)/python -m pytest -W error

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

$(STAMP): pyproject.toml deepnet_plugins_contrib/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -e '.[test,plot,image,sweep]' -e ./deepnet_plugins_contrib
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info deepnet_plugins_contrib/*.egg-info
