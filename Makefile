# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv on first use:
# torch first (pinned; a local wheel on the development machines), then this package in editable
# mode with the test and GPU extras, which builds the C++ extension when setup.py defines one.
# A stamp file records the install, so later runs skip it until pyproject.toml, setup.py or csrc/
# change (an editable install rebuilds the extension then).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fcinterp-installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test clean

demo: $(STAMP)
	$(BIN)/fcinterp demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(wildcard setup.py csrc/*)
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[test,gpu]"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info report
