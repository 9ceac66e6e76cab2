# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv on first use:
# torch first (pinned), then this package in editable mode with its extras (demo weights, tests,
# GPU kernels, static checks), which builds the C++ extension when setup.py can.
# A stamp file records the install, so later runs skip it until pyproject.toml, setup.py or csrc/
# change (an editable install rebuilds the extension then).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fcinterp-installed
TORCH := torch==2.14.1 torchvision==0.29.1
CSRC := $(wildcard csrc/*.cpp csrc/*.h)

.PHONY: demo test check clean

demo: $(STAMP)
	$(BIN)/fcinterp demo

# Static checks first (seconds), then the whole suite.
test: check
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/clang-format --dry-run --Werror $(CSRC)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml $(wildcard setup.py) $(CSRC)
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[demo,test,gpu,lint]"
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info report
