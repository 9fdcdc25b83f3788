# syntax=docker/dockerfile:1
# Two images from one source tree:
#   docker build --target operator -t trainwright/operator .
#   docker build --target trainer  -t trainwright/trainer .                          # CUDA torch
#   docker build --target trainer  -t trainwright/trainer:cpu --build-arg TORCH_VARIANT=cpu .
# Each image is its pinned dependencies in a virtual environment (/opt/venv, a layer that only
# a change to pyproject.toml rebuilds: the trainer's is several GB), plus this tree's package
# in a small layer of its own (/opt/trainwright). Both run as uid 1000.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- runtime base
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/trainwright/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/trainwright \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --gid 1000 trainwright \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin trainwright
WORKDIR /tmp

# ---------------------------------------------------------------------------- dependencies
# requirements-EXTRA.txt: the core dependencies plus one extra's, read from pyproject.toml.
# PIP_NO_CACHE_DIR set to "" lets a build that mounts a pip cache at /root/.cache/pip use it.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; [open(f"requirements-{extra}.txt", "w").write("\n".join(p["dependencies"] + extra_deps) + "\n") for extra, extra_deps in p["optional-dependencies"].items()]'

FROM runtime AS operator-deps
ARG PIP_NO_CACHE_DIR=1
ENV PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR} PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /src/requirements-operator.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt \
    && /opt/venv/bin/python -m compileall -q -x '/tests?/|/testing/' /opt/venv/lib \
    && rm /tmp/requirements.txt

FROM runtime AS trainer-deps
# cuda: PyPI's Linux torch wheels bundle the CUDA runtime (the host needs only the driver).
# cpu: the CPU-only wheels, a much smaller image for CPU nodes and local runs.
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG PIP_NO_CACHE_DIR=1
ENV PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR} PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /src/requirements-trainer.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && torch_pin="$(grep -E '^torch[=<>~ ]' /tmp/requirements.txt)" \
    && case "${TORCH_VARIANT}" in \
         cuda) /opt/venv/bin/pip install "${torch_pin}" ;; \
         cpu) /opt/venv/bin/pip install --index-url "${TORCH_CPU_INDEX}" "${torch_pin}" ;; \
         *) echo "TORCH_VARIANT must be cuda or cpu, not ${TORCH_VARIANT}" >&2; exit 1 ;; \
       esac \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt \
    && /opt/venv/bin/python -m compileall -q -x '/tests?/|/testing/' /opt/venv/lib \
    && rm /tmp/requirements.txt

# ---------------------------------------------------------------------------- this tree
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ operator/
COPY trainer/ trainer/
# The package alone (its dependencies are in /opt/venv); its console script runs /opt/venv's Python.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps --target /opt/trainwright /wheels/trainwright-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/trainwright

# ---------------------------------------------------------------------------- operator
FROM operator-deps AS operator
COPY --from=builder /opt/trainwright /opt/trainwright
USER 1000:1000
EXPOSE 8000 8080
ENTRYPOINT ["trainwright", "operator"]

# ---------------------------------------------------------------------------- trainer
FROM trainer-deps AS trainer
COPY --from=builder /opt/trainwright /opt/trainwright
USER 1000:1000
EXPOSE 9090
ENTRYPOINT ["python", "-m", "trainwright.trainer"]
