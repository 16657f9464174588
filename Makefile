# faceledger developer commands. `make install` is idempotent: it (re)installs only when
# pyproject.toml changed since the last install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ./var
HOST ?= 127.0.0.1
PORT ?= 8000
EXTRAS ?= dev

.PHONY: install run test lint typecheck unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	touch $(STAMP)

run: install
	$(BIN)/faceledger serve --data $(DATA) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m pip install -q --no-deps insightface==2.1 face-recognition==1.3.0
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/search.py --sizes 10000 100000
	$(BIN)/python benchmarks/video.py
	$(BIN)/python benchmarks/load.py --seconds 30

clean:
	rm -rf $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache
