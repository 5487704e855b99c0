# Sigma project. `make test` and `make demo` set everything up first (scripts/setup.sh,
# quick when nothing changed).
VENV ?= .venv
PYTEST_ARGS ?= -q

# DDS discovery stays on this machine unless you say otherwise
# (e.g. `make demo ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`).
ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_AUTOMATIC_DISCOVERY_RANGE

.PHONY: setup test demo clean distclean

setup:
	SIGMA_VENV="$(abspath $(VENV))" bash scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/sigma-demo

# Removes build outputs (the message package build); keeps the venv.
clean:
	rm -rf build

# Also removes the virtual environment.
distclean: clean
	rm -rf $(VENV)
