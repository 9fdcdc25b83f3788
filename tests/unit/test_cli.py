"""The CLI: exit codes, one clear line per problem, no tracebacks, and machine-readable plans."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainwright.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def run_cli(*args, env=None):
    """The real console script in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "trainwright.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=env)


def test_examples_are_valid():
    result = run_cli("validate", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("valid") == len(EXAMPLES)


def test_every_example_plans_as_json():
    for example in EXAMPLES:
        result = run_cli("plan", example, "-o", "json")
        assert result.returncode == 0, result.stderr
        [entry] = json.loads(result.stdout)
        assert entry["plan"]["strategy"] in ("fine-tune", "scratch", "hybrid")
        assert entry["plan"]["gpus"] >= 0


def test_compare_prints_all_three_strategies():
    result = run_cli("plan", ROOT / "examples" / "auto.yaml", "--compare", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    [entry] = yaml.safe_load(result.stdout)
    assert [s["strategy"] for s in entry["strategies"]] == ["fine-tune", "scratch", "hybrid"]
    table = run_cli("plan", ROOT / "examples" / "auto.yaml", "--compare")
    assert all(s in table.stdout for s in ("fine-tune", "scratch", "hybrid"))


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["spec"]["resources"].update(gpuType="nvidia-b999"), "spec.resources.gpuType: unknown GPU type 'nvidia-b999'"),
    (lambda d: d["spec"]["training"].update(epochs=-3), "spec.training.epochs: Input should be greater than or equal to 1"),
    (lambda d: d["spec"].update(strategy="scratch"), "spec.model.architecture: strategy scratch needs model.architecture"),
])
def test_validate_rejects_with_the_field_path(tmp_path, job_dict, mutate, expected):
    mutate(job_dict)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(job_dict))
    result = run_cli("validate", path)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_fails_when_any_file_fails(tmp_path, job_dict):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(job_dict))
    bad.write_text("apiVersion: [")
    result = run_cli("validate", good, bad)
    assert result.returncode == 1
    assert "valid" in result.stdout and "(yaml)" in result.stderr


def test_plan_of_a_missing_file_is_one_line(tmp_path):
    result = run_cli("plan", tmp_path / "absent.yaml")
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_crds_check_detects_drift_of_either_copy(tmp_path, capsys):
    args = ["crds", "--output-dir", str(tmp_path), "--chart-crd", str(tmp_path / "chart-crd.yaml")]
    assert main(args) == 0
    assert main(args + ["--check"]) == 0
    for name in ("trainingjobs.trainwright.dev.yaml", "chart-crd.yaml"):
        good = (tmp_path / name).read_text()
        (tmp_path / name).write_text("stale")
        assert main(args + ["--check"]) == 1
        (tmp_path / name).write_text(good)


@pytest.mark.parametrize("namespace", ["team-*", "Team", "ml_data", "a" * 64])
def test_operator_refuses_a_namespace_that_is_not_a_name(namespace):
    result = run_cli("operator", "--namespace", namespace)
    assert result.returncode == 2
    assert "--namespace" in result.stderr and "is not a namespace name" in result.stderr
    assert "Traceback" not in result.stderr


def test_operator_refuses_a_socks_proxy_in_the_kubeconfig_in_one_line(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True,
                                               "proxy-url": "socks5://127.0.0.1:1080"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    result = run_cli("operator", env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 2
    assert "socks5://127.0.0.1:1080: SOCKS proxies are not supported" in result.stderr
    assert "Traceback" not in result.stderr
