# syntax=docker/dockerfile:1
# Two images from one source tree:
#   docker build --target operator -t trainwright/operator .
#   docker build --target trainer  -t trainwright/trainer .                          # CUDA torch
#   docker build --target trainer  -t trainwright/trainer:cpu --build-arg TORCH_VARIANT=cpu .
# One virtual environment per image: its dependencies in a layer of their own, then the wheel
# of this tree; the final stages copy only that environment onto a slim Python, run as uid 1000.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- dependencies
# Each image's pinned dependencies (from pyproject.toml) get a layer of their own, which a
# change to the sources does not invalidate: the trainer's is several GB. PIP_NO_CACHE_DIR
# set to "" lets a build that mounts a pip cache at /root/.cache/pip use it.
FROM ${PYTHON_IMAGE} AS deps
ARG PIP_NO_CACHE_DIR=1
ENV PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
# requirements-EXTRA.txt: the core dependencies plus one extra's.
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; [open(f"requirements-{extra}.txt", "w").write("\n".join(p["dependencies"] + extra_deps) + "\n") for extra, extra_deps in p["optional-dependencies"].items()]'

FROM deps AS operator-deps
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements-operator.txt \
    && /opt/venv/bin/python -m compileall -q -x '/tests?/|/testing/' /opt/venv/lib

FROM deps AS trainer-deps
# cuda: PyPI's Linux torch wheels bundle the CUDA runtime (the host needs only the driver).
# cpu: the CPU-only wheels, a much smaller image for CPU nodes and local runs.
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv \
    && torch_pin="$(grep -E '^torch[=<>~ ]' requirements-trainer.txt)" \
    && case "${TORCH_VARIANT}" in \
         cuda) /opt/venv/bin/pip install "${torch_pin}" ;; \
         cpu) /opt/venv/bin/pip install --index-url "${TORCH_CPU_INDEX}" "${torch_pin}" ;; \
         *) echo "TORCH_VARIANT must be cuda or cpu, not ${TORCH_VARIANT}" >&2; exit 1 ;; \
       esac \
    && /opt/venv/bin/pip install -r requirements-trainer.txt \
    && /opt/venv/bin/python -m compileall -q -x '/tests?/|/testing/' /opt/venv/lib

# ---------------------------------------------------------------------------- builder
FROM deps AS builder
COPY operator/ operator/
COPY trainer/ trainer/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM operator-deps AS operator-venv
COPY --from=builder /wheels /wheels
RUN /opt/venv/bin/pip install --no-deps /wheels/trainwright-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python*/site-packages/trainwright

FROM trainer-deps AS trainer-venv
COPY --from=builder /wheels /wheels
RUN /opt/venv/bin/pip install --no-deps /wheels/trainwright-*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib/python*/site-packages/trainwright

# ---------------------------------------------------------------------------- runtime base
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --gid 1000 trainwright \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin trainwright
WORKDIR /tmp

# ---------------------------------------------------------------------------- operator
FROM runtime AS operator
COPY --from=operator-venv /opt/venv /opt/venv
USER 1000:1000
EXPOSE 8000 8080
ENTRYPOINT ["trainwright", "operator"]

# ---------------------------------------------------------------------------- trainer
FROM runtime AS trainer
COPY --from=trainer-venv /opt/venv /opt/venv
USER 1000:1000
EXPOSE 9090
ENTRYPOINT ["python", "-m", "trainwright.trainer"]
