# Everything a fresh machine with Python 3.11, git and make needs: `make run` and `make test`.
# uv (from PyPI) lives in its own small venv (.uv/) so `uv sync` never removes itself.
PYTHON ?= python3
UV := .uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run test lint typecheck bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check "uv>=0.13,<0.14"

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

run: .venv/.synced
	.venv/bin/tillbridge db upgrade
	.venv/bin/tillbridge serve

test: .venv/.synced lint
	.venv/bin/pytest

lint: .venv/.synced
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/lint-imports

bench: .venv/.synced
	.venv/bin/python bench/queue_drain.py
	.venv/bin/python bench/api_payments.py

clean:
	rm -rf .venv .uv var .pytest_cache .mypy_cache .ruff_cache
