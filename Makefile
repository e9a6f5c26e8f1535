# The two Quick start commands (README): `make demo` and `make test`.
.PHONY: setup demo test unit clean

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/lab run basic

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest

unit:
	.venv/bin/ruff check .
	.venv/bin/pytest -m "not docker"

clean:
	.venv/bin/lab clean
