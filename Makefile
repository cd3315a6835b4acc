# `make lint` is CI's lint step; the other targets are long-running checks that CI does not run (CI runs .ci/run).
# Generated files go to /tmp, never the repo.
PYTHON ?= .venv/bin/python
FUZZ_SECONDS ?= 600
FUZZ_SEED ?= 0

.PHONY: lint fuzz memory-profile

# What .ci/run checks before the tests: ruff's lint rules and its formatting (pyproject.toml's [tool.ruff]).
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# Fuzzing campaign of the image loader: findings (crashes, hangs, inputs over 5 CPU-s or 1 GiB peak RSS)
# and summary.json with the 5 slowest and 5 largest inputs (saved in costly/) in /tmp/redaes-fuzz.
fuzz:
	nice -n 10 $(PYTHON) benchmarks/fuzz.py --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) --out /tmp/redaes-fuzz

# Peak and sampled RSS of `redaes-lite score` over 10,000 files (random-init Lite0 student).
memory-profile:
	nice -n 10 $(PYTHON) benchmarks/memory_profile.py --files 10000 --model random-lite0 --batch-size 16
