# TORCH: the two commands a newcomer needs are `make demo` and `make test`.
.PHONY: setup web demo test bench lint clean-run

setup:
	@bash scripts/setup.sh

web:
	@cd web && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

demo: setup
	@bash scripts/demo.sh

test:
	@bash scripts/setup.sh --with-browser
	@bash scripts/test.sh

lint:
	.venv/bin/ruff check torch ingest api simulators migrations tests bench
	.venv/bin/mypy torch ingest api simulators

bench: setup
	.venv/bin/python bench/ingest.py
