# Sigma project. `make test` and `make demo` set everything up first (scripts/setup.sh,
# quick when nothing changed).
VENV ?= .venv
PYTEST_ARGS ?= -q

# DDS discovery stays on this machine unless you say otherwise
# (e.g. `make demo ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`).
ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_AUTOMATIC_DISCOVERY_RANGE

.PHONY: setup test demo mutation clean distclean

setup:
	SIGMA_VENV="$(abspath $(VENV))" bash scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/sigma-demo

# Mutation testing of sigma_model's core modules (mutmut; hours on 2 CPU cores, not part of `make test`).
# MUTATION_ARGS: e.g. `--module safety`, `--fast`, `--all`, `--report-only`, `--max-children 1` (see scripts/mutation.py).
MUTATION_ARGS ?=
mutation: setup
	nice -n 15 $(VENV)/bin/python scripts/mutation.py $(MUTATION_ARGS)

# Removes build outputs (the message package build); keeps the venv.
clean:
	rm -rf build sigma_model/mutants

# Also removes the virtual environment.
distclean: clean
	rm -rf $(VENV)
