# Everything runs from a local virtualenv; `make test` is what CI runs (.ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := operator,trainer,report,dev

.PHONY: setup demo test unit cluster-binaries kueue-binaries node-binaries node-packages images prometheus dev-cluster real-cluster crds lint-crds bench s3-server

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

# The main job: train a base model from scratch, then compare fine-tune, scratch and hybrid on CPU.
demo: setup
	$(VENV)/bin/trainwright compare runs/demo

# All tiers: unit, trainer (real torch and Ray), cluster (real control plane), chart (real helm,
# Prometheus), e2e (one real node running the images built from this tree).
# What it needs is built three at a time: the Go builds, the virtualenv and the images overlap.
test:
	$(MAKE) -j3 setup cluster-binaries kueue-binaries node-binaries node-packages prometheus images s3-server
	CI=$${CI:-} $(PY) -m pytest -ra

unit: setup
	$(PY) -m pytest tests/unit -q

cluster-binaries:
	hack/build-control-plane.sh

# Kueue's controller and CRDs (the operator tier's queueing tests): after the control plane
# (shared Go build cache).
kueue-binaries: cluster-binaries
	hack/build-kueue.sh

# kubelet, kube-proxy, containerd, CoreDNS, pause: after the control plane (shared Go build cache).
node-binaries: cluster-binaries
	hack/build-node.sh

node-packages:
	hack/install-node-packages.sh

# The Dockerfile's images for the real node, built with buildah (it needs no .venv, so that
# `make -j` overlaps it with the Go builds); the real node builds its pause and ray-operator
# images itself when it starts (seconds).
images: node-packages
	PYTHONPATH=hack python3 -m devcluster images python-base operator trainer

# s3proxy from Maven Central: the S3-compatible server the object storage tests run (Java 17).
s3-server:
	hack/install-s3-server.sh

# After node-packages: two apt-get runs at once would fight over dpkg's lock under `make -j`.
prometheus: | node-packages
	hack/install-prometheus.sh

# A cluster for a person: kubectl from the host works against it until Ctrl-C.
dev-cluster: setup cluster-binaries
	PYTHONPATH=hack $(PY) -m devcluster up

real-cluster: images
	PYTHONPATH=hack $(PY) -m devcluster up --real-node

crds: setup
	$(VENV)/bin/trainwright crds
