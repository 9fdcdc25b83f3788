# syntax=docker/dockerfile:1
# Two images from one source tree:
#   docker build --target operator -t trainwright/operator .
#   docker build --target trainer  -t trainwright/trainer .                          # CUDA torch
#   docker build --target trainer  -t trainwright/trainer:cpu --build-arg TORCH_VARIANT=cpu .
# A builder stage makes the wheel and one virtual environment per image; the final stages
# copy only that environment onto a slim Python, and run as uid 1000.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ operator/
COPY trainer/ trainer/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM builder AS operator-venv
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install "$(ls /wheels/trainwright-*.whl)[operator]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM builder AS trainer-venv
# cuda: PyPI's Linux torch wheels bundle the CUDA runtime (the host needs only the driver).
# cpu: the CPU-only wheels, a much smaller image for CPU nodes and local runs.
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv \
    && torch_pin="$(python -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print(next(r for r in d["project"]["optional-dependencies"]["trainer"] if r.startswith("torch")))')" \
    && case "${TORCH_VARIANT}" in \
         cuda) /opt/venv/bin/pip install "${torch_pin}" ;; \
         cpu) /opt/venv/bin/pip install --index-url "${TORCH_CPU_INDEX}" "${torch_pin}" ;; \
         *) echo "TORCH_VARIANT must be cuda or cpu, not ${TORCH_VARIANT}" >&2; exit 1 ;; \
       esac \
    && /opt/venv/bin/pip install "$(ls /wheels/trainwright-*.whl)[trainer]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

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
