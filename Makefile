# The two Quick start commands (README): `make demo` and `make test`.
.PHONY: setup demo test unit clean

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/lab run basic

# The shipped scenarios run once, side by side, through `lab test` as a CI job runs them
# (docs/ci.md), with its JUnit report in runs/; `pytest -n N tests/scenarios` runs the same
# cases from pytest (tests/docker/test_suite.py checks that it does).
test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest --ignore=tests/scenarios
	.venv/bin/lab test --junit runs/junit.xml

unit:
	.venv/bin/ruff check .
	.venv/bin/pytest -m "not docker"

clean:
	.venv/bin/lab clean
