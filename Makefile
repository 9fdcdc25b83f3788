# Everything runs from a local virtualenv; `make test` is what CI runs (.ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := operator,trainer,dev

.PHONY: setup demo test unit cluster-binaries prometheus dev-cluster crds lint-crds bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

# The main job: train a base model from scratch, then compare fine-tune, scratch and hybrid on CPU.
demo: setup
	$(VENV)/bin/trainwright compare runs/demo

# All tiers: unit, trainer (real torch and Ray), cluster (real control plane), chart (real helm, Prometheus).
test: setup cluster-binaries prometheus
	CI=$${CI:-} $(PY) -m pytest -ra

unit: setup
	$(PY) -m pytest tests/unit -q

cluster-binaries:
	hack/build-control-plane.sh

prometheus:
	hack/install-prometheus.sh

dev-cluster: setup cluster-binaries
	$(PY) -m trainwright.devcluster up

crds: setup
	$(VENV)/bin/trainwright crds
