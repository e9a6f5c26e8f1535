# The two Quick start commands (README): `make demo` and `make test`.
.PHONY: setup demo test unit clean

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/lab run basic

# The scenario tests run side by side (pytest-xdist): each is its own compose project, and
# most of a run is waiting.
test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest --ignore=tests/scenarios
	.venv/bin/pytest -n 4 tests/scenarios

unit:
	.venv/bin/ruff check .
	.venv/bin/pytest -m "not docker"

clean:
	.venv/bin/lab clean
