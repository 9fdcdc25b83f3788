"""The chart in a real control plane: installed, its RBAC runs the operator, Prometheus watches it.

One module-scoped story: `helm install` into a namespace that enforces the restricted Pod
Security Standard; the operator process runs outside the cluster with the chart's
ServiceAccount token (not admin), the Deployment's args and env, and the catalog ConfigMap;
it takes examples/fine-tune.yaml to Succeeded in another restricted namespace while a real
Prometheus scrapes it every second and evaluates the chart's rules. Then every dashboard
query must have returned data, every alert must evaluate cleanly, `helm upgrade` must keep the
TrainingJobs, and `helm uninstall` must keep the CRD.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from chartkit import CHART, ROOT, Prometheus, entrypoint, installed_command, require, rule_groups
from devcluster import ANN_COMPLETE, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster

RELEASE = "trainwright"
SYSTEM_NS = "tw-chart-system"
JOBS_NS = "tw-chart-jobs"
EXAMPLE = ROOT / "examples" / "fine-tune.yaml"
JOB_LABEL = "trainwright.dev/job"
# Rendered only: this cluster has no Prometheus Operator CRDs, so Prometheus loads the groups directly.
MONITORING_VALUES = ["--set", "prometheusRule.enabled=true"]


def kget(cp, *args: str) -> dict:
    return json.loads(cp.kubectl("get", *args, "-o", "json"))


def dry_run_pod(cp, namespace: str, name: str, template: dict) -> subprocess.CompletedProcess[str]:
    """Ask the API server (admission included, nothing stored) to create a Pod from a pod template."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "labels": template.get("metadata", {}).get("labels", {})},
           "spec": template["spec"]}
    return cp.kubectl_run("create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(pod))


def pv_and_claim(name: str, namespace: str) -> list[dict]:
    """A pre-bound hostPath volume and its claim: enough for the scheduler on fake nodes."""
    pv_name = f"{namespace}-{name}"
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": f"/tmp/{pv_name}"},
                  "claimRef": {"namespace": namespace, "name": name}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]


# --------------------------------------------------------------------------- the story


@pytest.fixture(scope="module")
def release(control_plane):
    control_plane.restricted_namespace(SYSTEM_NS)
    output = control_plane.helm("install", RELEASE, str(CHART), "--namespace", SYSTEM_NS, timeout=180)
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/trainingjobs.trainwright.dev")
    deployment = kget(control_plane, "deployment", RELEASE, "-n", SYSTEM_NS)
    deployment["notes"] = output.split("NOTES:", 1)[-1]
    return deployment


def operator_as_deployed(cp, deployment: dict, work_dir: Path) -> OperatorProcess:
    """`trainwright operator` as the chart's Deployment would run it, as the chart's ServiceAccount."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    downward = {"metadata.name": f"{RELEASE}-pod", "metadata.namespace": SYSTEM_NS}  # what the kubelet would fill in
    env = {e["name"]: e["value"] if "value" in e else downward[e["valueFrom"]["fieldRef"]["fieldPath"]]
           for e in container["env"]}
    # The catalog as the pod would see it: the ConfigMap's file at TRAINWRIGHT_CATALOG.
    config_map = next(v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    catalog = work_dir / "catalog.yaml"
    catalog.write_text(kget(cp, "configmap", config_map, "-n", SYSTEM_NS)["data"]["catalog.yaml"])
    env["TRAINWRIGHT_CATALOG"] = str(catalog)
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == "health" and probe["path"] == "/healthz"
    return OperatorProcess(cp, work_dir / "operator.log", command=installed_command(entrypoint("operator")),
                           args=container["args"], env=env,
                           kubeconfig=cp.service_account_kubeconfig(service_account, SYSTEM_NS, create=False))


@pytest.fixture(scope="module")
def operator(control_plane, release, tmp_path_factory):
    probe = subprocess.run([*installed_command(entrypoint("operator")), "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        require(f"the operator (`trainwright operator`): {probe.stderr.strip()[-300:]}")
    op = operator_as_deployed(control_plane, release, tmp_path_factory.mktemp("operator")).start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def prometheus(control_plane, operator, prometheus_binary, tmp_path_factory):
    rendered = [d for d in yaml.safe_load_all(control_plane.helm(
        "template", RELEASE, str(CHART), "--namespace", SYSTEM_NS, *MONITORING_VALUES)) if d]
    prom = Prometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"),
                      targets=[f"127.0.0.1:{operator.metrics_port}"], rules=rule_groups(rendered))
    yield prom
    prom.stop()


@pytest.fixture(scope="module")
def finished_job(control_plane, operator, prometheus):
    """examples/fine-tune.yaml applied in a restricted namespace and run to Succeeded."""
    cp = control_plane
    started = time.time()
    cp.restricted_namespace(JOBS_NS)
    job = yaml.safe_load(EXAMPLE.read_text())
    name = job["metadata"]["name"]
    claims = {job["spec"]["checkpoint"]["pvc"], job["spec"]["dataset"]["source"].removeprefix("pvc://").split("/")[0]}
    cp.kubectl("apply", "-f", "-", input="\n---\n".join(
        json.dumps(o) for claim in sorted(claims) for o in pv_and_claim(claim, JOBS_NS)))
    wait_for(lambda: all(kget(cp, "pvc", c, "-n", JOBS_NS)["status"].get("phase") == "Bound" for c in claims),
             timeout=60, message="the example's claims Bound")
    cp.kubectl("apply", "-n", JOBS_NS, "-f", str(EXAMPLE))

    launcher = wait_for(lambda: (kget(cp, "jobs", "-n", JOBS_NS, "-l", f"{JOB_LABEL}={name}")["items"] or [None])[0],
                        timeout=60, message=lambda: f"the operator's batch Job for {name}\n{operator.logs()}")
    # Play the trainer: report progress with the job's own ServiceAccount, as the real one does.
    trainer_sa = launcher["spec"]["template"]["spec"]["serviceAccountName"]
    trainer_kubeconfig = cp.service_account_kubeconfig(trainer_sa, JOBS_NS, create=False)
    progress = {"step": 1200, "totalSteps": 4000, "epoch": 1, "ratio": 0.3, "loss": 0.41,
                "samplesPerSecond": 812.0, "etaSeconds": 3100.0}

    def report() -> bool:
        proc = cp.kubectl_run("patch", "trainingjob", name, "-n", JOBS_NS, "--subresource=status", "--type=merge",
                              "-p", json.dumps({"status": {"progress": progress}}), kubeconfig=trainer_kubeconfig)
        assert proc.returncode == 0, proc.stderr
        return True

    # Hold its (kwok) pod Running until Prometheus has scraped the projection the progress makes
    # (it goes when the job finishes), then let it succeed.
    pod = wait_for(lambda: (kget(cp, "pods", "-n", JOBS_NS, "-l", f"{JOB_LABEL}={name}")["items"] or [None])[0],
                   timeout=60, message=f"the pod of {name}")["metadata"]["name"]
    cp.kubectl("annotate", "pod", pod, "-n", JOBS_NS, "--overwrite", f"{ANN_COMPLETE}=false")
    report()
    wait_for(lambda: prometheus.query(f'trainwright_job_projected_cost_dollars{{name="{name}"}} > 0'), timeout=60,
             message=lambda: f"Prometheus seeing {name}'s projected cost\n{operator.logs()}")
    cp.kubectl("annotate", "pod", pod, "-n", JOBS_NS, "--overwrite", f"{ANN_COMPLETE}=true")

    def succeeded() -> bool:
        phase = kget(cp, "trainingjob", name, "-n", JOBS_NS).get("status", {}).get("phase")
        assert phase not in ("Failed", "BudgetExceeded"), f"{name} is {phase}\n{operator.logs()}"
        return phase == "Succeeded"

    wait_for(succeeded, timeout=120, message=lambda: f"{name} Succeeded\n{operator.logs()}")
    # The finished job's progress as the trainer leaves it, then Prometheus must have seen the end.
    progress.update(step=4000, ratio=1.0, etaSeconds=0.0, loss=0.12)
    report()
    wait_for(lambda: prometheus.query(f'trainwright_job_phase{{name="{name}",phase="Succeeded"}} == 1')
             and prometheus.query(f'trainwright_job_progress_ratio{{name="{name}"}} == 1'),
             timeout=60, message=lambda: f"Prometheus seeing {name} Succeeded\n{prometheus.logs()}")
    return {"name": name, "started": started, "launcher": launcher, "trainer_kubeconfig": trainer_kubeconfig}


# --------------------------------------------------------------------------- tests


def test_operator_pod_is_admitted_under_restricted_pod_security(control_plane, release):
    template = release["spec"]["template"]
    proc = dry_run_pod(control_plane, SYSTEM_NS, "operator-pss-check", template)
    assert proc.returncode == 0 and "would violate" not in proc.stderr, proc.stderr
    # The namespace does enforce: the same pod without its security context is refused.
    loose = json.loads(json.dumps(template))
    loose["spec"].pop("securityContext")
    loose["spec"]["containers"][0].pop("securityContext")
    refused = dry_run_pod(control_plane, SYSTEM_NS, "operator-pss-loose", loose)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
    # And the Deployment's own ReplicaSet got its pod admitted and Ready (on a fake node).
    control_plane.kubectl("rollout", "status", f"deployment/{RELEASE}", "-n", SYSTEM_NS, "--timeout=90s")


def test_install_notes_tell_the_user_what_to_do_next(release):
    notes = release["notes"]
    for line in (f"kubectl -n {SYSTEM_NS} rollout status deployment/{RELEASE}", "kubectl apply -f job.yaml",
                 "kubectl get tj -w", f"service/{RELEASE}-metrics", "set prometheusRule.enabled=true",
                 "label grafana_dashboard=\"1\"", f"helm uninstall {RELEASE} -n {SYSTEM_NS}"):
        assert line in notes, f"{line!r} not in NOTES:\n{notes}"


def test_chart_service_account_is_not_admin(control_plane, operator):
    for verb, resource in (("create", "pods"), ("delete", "nodes"), ("get", "secrets"), ("create", "secrets"), ("create", "deployments")):
        answer = control_plane.kubectl_run("auth", "can-i", verb, resource, "--all-namespaces",
                                           kubeconfig=operator.kubeconfig).stdout.strip()
        assert answer == "no", f"the chart's ServiceAccount may {verb} {resource}"


def test_operator_with_the_charts_rbac_takes_the_example_to_succeeded(control_plane, operator, finished_job):
    job = kget(control_plane, "trainingjob", finished_job["name"], "-n", JOBS_NS)
    assert job["status"]["phase"] == "Succeeded"
    assert job["status"]["plan"]["strategy"] == "fine-tune"
    logs = operator.logs(tail=10**9)
    assert "Forbidden" not in logs and " 403" not in logs, logs[-4000:]


def test_trainer_pod_is_admitted_under_restricted_pod_security(control_plane, finished_job):
    template = finished_job["launcher"]["spec"]["template"]
    proc = dry_run_pod(control_plane, JOBS_NS, "trainer-pss-check", template)
    assert proc.returncode == 0 and "would violate" not in proc.stderr, proc.stderr
    # What the chart's PodMonitor selects: the trainer's labels and its named metrics port.
    labels = template["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "trainwright-trainer" and labels["app.kubernetes.io/managed-by"] == "trainwright"
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
    assert ports.get("metrics") == 9090


def test_trainer_service_account_may_patch_only_its_own_jobs_status(control_plane, finished_job):
    kubeconfig = finished_job["trainer_kubeconfig"]
    can = lambda *args: control_plane.kubectl_run("auth", "can-i", *args, "-n", JOBS_NS,  # noqa: E731
                                                  kubeconfig=kubeconfig).stdout.strip()
    assert can("patch", f"trainingjobs/{finished_job['name']}", "--subresource=status") == "yes"
    assert can("patch", "trainingjobs/another-job", "--subresource=status") == "no"
    assert can("delete", f"trainingjobs/{finished_job['name']}") == "no"


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((CHART / "dashboards" / "trainwright.json").read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$namespace", ".*")
            assert "$" not in expr, f"unresolved variable in {panel['title']}: {expr}"
            out.append((f"{panel['title']} / {target['refId']}", expr))
    return out


def test_every_dashboard_query_returned_data_during_the_job(prometheus, finished_job):
    def empty() -> list[str]:  # rates need two scrapes of a series: a new one may have had one
        return [f"{title}: {expr}" for title, expr in _dashboard_exprs()
                if not prometheus.query_range(expr, finished_job["started"], time.time(), step=1)]

    wait_for(lambda: not empty(), timeout=30, message=lambda: "queries with no data:\n" + "\n".join(empty()))
    namespaces = prometheus.api("label/namespace/values", **{"match[]": "trainwright_job_phase"})
    assert JOBS_NS in namespaces, namespaces


def test_every_alert_expression_evaluates_without_error(prometheus, finished_job):
    groups = yaml.safe_load((prometheus.work_dir / "rules.yaml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    for rule in rules:
        prometheus.query(rule["expr"])  # raises with Prometheus' error message

    def evaluated() -> list:
        loaded = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        assert len(loaded) == len(rules), loaded
        return loaded if all(r.get("lastEvaluation", "").startswith("20") for r in loaded) else []

    loaded = wait_for(evaluated, timeout=30, message="every rule evaluated by Prometheus")
    unhealthy = {r["name"]: r.get("lastError") for r in loaded if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    firing = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}
    assert not firing & {"TrainwrightJobFailed", "TrainwrightOperatorAbsent"}, firing


def test_helm_upgrade_keeps_existing_trainingjobs(control_plane, finished_job):
    before = kget(control_plane, "trainingjobs", "-A")["items"]
    crd_uid = kget(control_plane, "crd", "trainingjobs.trainwright.dev")["metadata"]["uid"]
    control_plane.helm("upgrade", RELEASE, str(CHART), "--namespace", SYSTEM_NS, "--reuse-values",
                       "--set-json", "catalog.utilization=0.35", timeout=180)
    after = kget(control_plane, "trainingjobs", "-A")["items"]
    assert {o["metadata"]["uid"] for o in after} == {o["metadata"]["uid"] for o in before} != set()
    assert kget(control_plane, "crd", "trainingjobs.trainwright.dev")["metadata"]["uid"] == crd_uid
    config_map = kget(control_plane, "configmap", f"{RELEASE}-catalog", "-n", SYSTEM_NS)
    assert yaml.safe_load(config_map["data"]["catalog.yaml"])["utilization"] == 0.35


def test_helm_uninstall_keeps_the_crd_and_the_jobs(control_plane, finished_job):
    control_plane.helm("uninstall", RELEASE, "--namespace", SYSTEM_NS, "--wait", timeout=180)
    assert kget(control_plane, "crd", "trainingjobs.trainwright.dev")
    assert kget(control_plane, "trainingjob", finished_job["name"], "-n", JOBS_NS)["status"]["phase"] == "Succeeded"
    assert control_plane.kubectl_run("get", "deployment", RELEASE, "-n", SYSTEM_NS).returncode != 0
