# Everything runs inside .venv, created on first use.
VENV     ?= .venv
PY       := $(VENV)/bin/python
TORCH    ?= torch==2.13.0
CONFIG   ?= assets/configs/demo.toml
OUT      ?= out/demo
FEATURES ?= out/demo-features
RUN      ?= out/demo-train
WORKERS  ?= 1
MODEL    ?= facebook/dinov2-small
TRAIN_CONFIG ?= assets/configs/train_demo.toml

.PHONY: install scenes validate features train eval test lint bench-render

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

scenes: install
	$(PY) -m generation scenes --config $(CONFIG) --out $(OUT) --workers $(WORKERS)
	$(PY) -m generation validate $(OUT)

validate: install
	$(PY) -m generation validate $(OUT)

features: install
	$(PY) -m preprocessing features --variant $(OUT) --out $(FEATURES) --model $(MODEL)

train: install
	$(PY) -m training train --config $(TRAIN_CONFIG) --features $(FEATURES) --out $(RUN)

eval: install
	$(PY) -m training eval --run $(RUN) --features $(FEATURES)

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .

bench-render: install
	$(PY) benchmarks/bench_render.py
