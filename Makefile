# TORCH: the two commands a newcomer needs are `make demo` and `make test`.
.PHONY: setup demo test bench lint clean-run

setup:
	@bash scripts/setup.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	@bash scripts/test.sh

lint:
	.venv/bin/ruff check torch ingest api simulators migrations tests bench
	.venv/bin/mypy torch ingest api simulators

bench: setup
	.venv/bin/python bench/ingest.py
