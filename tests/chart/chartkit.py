"""Helpers of the chart tier: find tools, run helm, pick rendered objects, drive Prometheus.

Imported by the tests of tests/chart (pytest puts this folder on sys.path: tests/ is not a package).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import devcluster
from devcluster import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "trainwright"


def parse_stages(dockerfile: Path = ROOT / "Dockerfile") -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions as (INSTRUCTION, arguments), continuation lines joined."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    logical = dockerfile.read_text().replace("\\\n", " ")
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else f"stage{len(stages)}"
            current = stages[name] = [("FROM", words[0])]
        elif current is not None:
            current.append((instruction, args.strip()))
    return stages


def entrypoint(target: str, dockerfile: Path = ROOT / "Dockerfile") -> list[str]:
    """The exec-form ENTRYPOINT of a Dockerfile stage."""
    found = [json.loads(args) for ins, args in parse_stages(dockerfile)[target] if ins == "ENTRYPOINT"]
    assert len(found) == 1, f"stage {target} needs exactly one exec-form ENTRYPOINT"
    return found[0]


def installed_command(command: list[str]) -> list[str]:
    """``command`` as the image would run it, with this Python's venv standing in for /opt/venv."""
    bin_dir = Path(sys.executable).parent
    head = bin_dir / command[0]
    return [str(head) if head.exists() else command[0], *command[1:]]


def require(what: str) -> None:
    """Skip (developer machine) or fail (CI): ``what`` is needed and missing."""
    if os.environ.get("CI"):
        pytest.fail(f"missing: {what}", pytrace=False)
    pytest.skip(f"missing: {what}")


def find_tool(name: str) -> Path | None:
    """``name`` from the control-plane bin dir, then next to this Python, then on PATH."""
    for candidate in (devcluster.default_bin_dir() / name, Path(sys.executable).parent / name):
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


class Helm:
    """`helm` without a cluster: lint and template the chart with value sets."""

    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def template(self, values: dict | None = None, *extra: str, namespace: str = "trainwright-system") -> list[dict]:
        """Every rendered object, as dicts."""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(values or {}, f)
            f.flush()
            out = self.run("template", "trainwright", str(CHART), "--namespace", namespace, "-f", f.name, *extra).stdout
        return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def rule_groups(rendered: list[dict]) -> dict:
    """The PrometheusRule's groups as a Prometheus rule file."""
    return {"groups": one(rendered, "PrometheusRule")["spec"]["groups"]}


# --------------------------------------------------------------------------- Prometheus


class Prometheus:
    """A Prometheus server (Debian's package) as a subprocess on a free loopback port."""

    def __init__(self, binary: Path, work_dir: Path, targets: list[str], rules: dict | None = None,
                 port: int | None = None, prefix: tuple[str, ...] = ()):
        """``prefix`` runs it through another command (e.g. nsenter into a node's network
        namespace, where ``port`` is then forwarded to the host)."""
        self.work_dir = work_dir
        self.port = port or devcluster.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "trainwright-operator", "static_configs": [{"targets": targets}]}],
        }
        if rules:
            (work_dir / "rules.yaml").write_text(yaml.safe_dump(rules))
            config["rule_files"] = [str(work_dir / "rules.yaml")]
        (work_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = work_dir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*prefix, str(binary), f"--config.file={work_dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work_dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        wait_for(self._ready, timeout=60, message=lambda: f"Prometheus ready at {self.url}\n{self.logs()}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.logs()}")
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
            return resp.status == 200

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; returns `data`, or raises with Prometheus' error."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            body = json.loads(err.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1) -> list:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
