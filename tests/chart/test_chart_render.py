"""The chart, rendered by the real helm: lint, value sets, schema, RBAC, security, catalog, alerts."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from chartkit import CHART, by_kind, one, rule_groups
from trainwright.api.chart import build_chart_crd
from trainwright.planner.catalog import DEFAULT_GPU_TYPES, DEFAULT_UTILIZATION, parse_catalog

MONITORING = {
    "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus"}},
    "podMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus"}},
    "prometheusRule": {"enabled": True, "additionalLabels": {"release": "kube-prometheus", "role": "alerts"}},
}
VALUE_SETS = {
    "defaults": {},
    "everything-on": {
        **MONITORING,
        "operator": {"namespaces": ["ml", "research"], "podLabels": {"team": "ml"},
                     "extraEnv": [{"name": "TZ", "value": "UTC"}], "nodeSelector": {"pool": "system"},
                     "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]},
        "grafanaDashboard": {"labelKey": "grafana_dashboard_trainwright", "labelValue": "yes",
                             "namespace": "monitoring", "annotations": {"grafana_folder": "ML"}},
        "catalog": {"utilization": 0.35, "gpuTypes": {"nvidia-h100": {"peakTFLOPS": 989.5, "pricePerHourUSD": 2.2},
                                                      "nvidia-b200": {"peakTFLOPS": 2250, "pricePerHourUSD": 6.0}}},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/trainwright"}},
        "imagePullSecrets": [{"name": "registry"}],
        "image": {"tag": "0.1.0-rc1"},
    },
    "monitoring-off": {"grafanaDashboard": {"enabled": False}},
    "no-crds-no-rbac": {"crds": {"install": False}, "rbac": {"create": False},
                        "serviceAccount": {"create": False, "name": "platform-operator"}},
}

# The operator's needs (docs/architecture.md, the operator): (group, resource) -> verbs.
EXPECTED_RULES = {
    ("trainwright.dev", "trainingjobs"): {"get", "list", "watch", "patch", "update", "delete"},
    ("trainwright.dev", "trainingjobs/status"): {"get", "patch", "update"},
    ("", "configmaps"): {"get", "list", "watch", "create", "delete", "patch"},
    ("", "serviceaccounts"): {"get", "list", "watch", "create", "delete", "patch"},
    ("rbac.authorization.k8s.io", "roles"): {"get", "list", "watch", "create", "delete", "patch"},
    ("rbac.authorization.k8s.io", "rolebindings"): {"get", "list", "watch", "create", "delete", "patch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete", "patch"},
    ("ray.io", "rayjobs"): {"get", "list", "watch", "create", "delete", "patch"},
    ("kueue.x-k8s.io", "workloads"): {"get", "list"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "persistentvolumeclaims"): {"get"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
}


@pytest.fixture(scope="module", params=sorted(VALUE_SETS))
def value_set(request):
    return request.param, VALUE_SETS[request.param]


def test_helm_lint_strict_passes_for_every_value_set(helm_cli, tmp_path):
    for name, values in VALUE_SETS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        proc = helm_cli.run("lint", "--strict", str(CHART), "-f", str(path), check=False)
        assert proc.returncode == 0, f"{name}:\n{proc.stdout}{proc.stderr}"


def test_every_value_set_renders_valid_kubernetes_objects(helm_cli, value_set):
    name, values = value_set
    rendered = helm_cli.template(values)
    for obj in rendered:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj
    kinds = {o["kind"] for o in rendered}
    monitoring = name == "everything-on"
    assert ("ServiceMonitor" in kinds) == monitoring
    assert ("PodMonitor" in kinds) == monitoring
    assert ("PrometheusRule" in kinds) == monitoring
    assert ("CustomResourceDefinition" in kinds) == (name != "no-crds-no-rbac")
    assert ("ClusterRole" in kinds) == (name != "no-crds-no-rbac")
    assert ("ServiceAccount" in kinds) == (name != "no-crds-no-rbac")
    assert sum(o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard") for o in rendered) == (
        0 if name == "monitoring-off" else 1)
    assert {"Deployment", "Service", "ConfigMap"} <= kinds


def test_monitors_and_rules_carry_additional_labels(helm_cli):
    rendered = helm_cli.template(VALUE_SETS["everything-on"])
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PodMonitor", "podMonitor"), ("PrometheusRule", "prometheusRule")):
        labels = one(rendered, kind)["metadata"]["labels"]
        assert MONITORING[key]["additionalLabels"].items() <= labels.items(), kind
    pod_monitor = one(rendered, "PodMonitor")["spec"]
    assert pod_monitor["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "trainwright-trainer", "app.kubernetes.io/managed-by": "trainwright"}
    assert pod_monitor["namespaceSelector"] == {"matchNames": ["ml", "research"]}
    service = one(rendered, "Service")
    service_monitor = one(rendered, "ServiceMonitor")["spec"]
    assert service_monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service_monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_schema_refuses_unknown_keys_at_every_level(helm_cli):
    for values in ({"replicas": 2}, {"operator": {"replicas": 2}}, {"serviceMonitor": {"labels": {"a": "b"}}},
                   {"catalog": {"gpuTypes": {"nvidia-h100": {"price": 2}}}}):
        proc = helm_cli.run("template", "trainwright", str(CHART), "--set-json",
                            f"{next(iter(values))}={json.dumps(next(iter(values.values())))}", check=False)
        assert proc.returncode != 0 and "schema" in proc.stderr, (values, proc.stderr)
    proc = helm_cli.run("template", "trainwright", str(CHART), "--set", "operator.metricsPort=http", check=False)
    assert proc.returncode != 0 and "metricsPort" in proc.stderr


def test_schema_says_additional_properties_false_on_every_fixed_object():
    schema = json.loads((CHART / "values.schema.json").read_text())
    free_form = {"$.properties.global", "$.properties.operator.properties.affinity",
                 "$.properties.operator.properties.extraEnv.items"}

    def walk(node, path):
        if node.get("type") == "object" and path not in free_form:
            assert "additionalProperties" in node, f"{path} accepts unknown keys"
            if "properties" in node:
                assert node["additionalProperties"] is False, path
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                walk(sub, f"{path}.{key}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}.{key}")

    walk(schema, "$")


def test_crd_template_is_the_generated_crd_and_is_kept_on_uninstall(helm_cli):
    crd = one(helm_cli.template(), "CustomResourceDefinition")
    assert crd == build_chart_crd()
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_operator_deployment_is_one_recreated_replica_with_a_restricted_security_context(helm_cli):
    deployment = one(helm_cli.template(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["runAsUser"] == 1000 and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "health": 8080}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e.get("value") for e in container["env"]}
    catalog_dir = env["TRAINWRIGHT_CATALOG"].rsplit("/", 1)[0]
    assert volumes[mounts[catalog_dir]]["configMap"]["name"] == "trainwright-catalog"
    assert env["TRAINWRIGHT_TRAINER_IMAGE"] == "trainwright/trainer:0.1.0"
    assert container["image"] == "trainwright/operator:0.1.0"
    assert container["args"] == ["--metrics-port=8000", "--health-port=8080"]


def test_namespaces_value_becomes_namespace_flags(helm_cli):
    deployment = one(helm_cli.template(VALUE_SETS["everything-on"]), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--namespace=ml", "--namespace=research"]


def test_cluster_role_is_exactly_what_the_operator_needs_without_wildcards(helm_cli):
    rendered = helm_cli.template()
    role = one(rendered, "ClusterRole")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED_RULES
    binding = one(rendered, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trainwright", "namespace": "trainwright-system"}]


def test_catalog_values_are_the_built_in_catalog():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["catalog"]
    assert values["utilization"] == DEFAULT_UTILIZATION
    assert set(values["gpuTypes"]) == set(DEFAULT_GPU_TYPES)
    for name, gpu in DEFAULT_GPU_TYPES.items():
        entry = values["gpuTypes"][name]
        assert entry["peakTFLOPS"] * 1e12 == pytest.approx(gpu.peak_flops), name
        assert entry["pricePerHourUSD"] == pytest.approx(gpu.price_per_hour), name
        assert entry["memoryGiB"] == gpu.memory_gib, name


def test_catalog_config_map_is_read_by_the_planner(helm_cli):
    rendered = helm_cli.template(VALUE_SETS["everything-on"])
    (config_map,) = [o for o in by_kind(rendered, "ConfigMap") if o["metadata"]["name"] == "trainwright-catalog"]
    catalog = parse_catalog(yaml.safe_load(config_map["data"]["catalog.yaml"]))
    assert catalog.utilization == 0.35
    assert catalog.get("nvidia-h100").price_per_hour == 2.2
    assert catalog.get("nvidia-b200").peak_flops == 2250e12
    assert catalog.get("nvidia-l4") == DEFAULT_GPU_TYPES["nvidia-l4"]


def test_catalog_change_rolls_the_operator(helm_cli):
    def checksum(values):
        deployment = one(helm_cli.template(values), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/catalog"]

    assert checksum({}) != checksum({"catalog": {"utilization": 0.3}})


def test_dashboard_config_map_has_the_configured_label_and_a_valid_dashboard(helm_cli):
    rendered = helm_cli.template(VALUE_SETS["everything-on"])
    (config_map,) = [o for o in by_kind(rendered, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard_trainwright"] == "yes"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "ML"}
    default = [o for o in by_kind(helm_cli.template(), "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert default[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["trainwright.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "trainwright.json").read_text())


def test_dashboard_covers_phases_progress_eta_cost_gpu_hours_loss_and_throughput():
    dashboard = json.loads((CHART / "dashboards" / "trainwright.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    titles = " ".join(p["title"].lower() for p in panels)
    for words in ("by phase", "progress", "eta", "cost by namespace", "cost by strategy", "gpu-hours", "loss",
                  "samples per second"):
        assert words in titles, words
    for metric in ("trainwright_job_phase", "trainwright_job_progress_ratio", "trainwright_job_eta_seconds",
                   "trainwright_job_cost_dollars_total", "trainwright_job_gpu_seconds_total", "trainwright_job_loss",
                   "trainwright_job_samples_per_second"):
        assert metric in exprs, metric
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_rendered_rules_pass_promtool_check(helm_cli, promtool, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups(helm_cli.template(MONITORING))))
    proc = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert {"TrainwrightJobFailed", "TrainwrightJobBudgetNearlySpent", "TrainwrightJobBudgetAtRisk", "TrainwrightJobPendingTooLong",
            "TrainwrightOperatorWatchStale"} <= names


JOB = 'namespace="ml",strategy="fine-tune"'
PENDING_DESCRIPTION = ("Its pods are not running: no GPUs free, a missing PVC, or an image that cannot be pulled. "
                       "See kubectl describe tj {name} -n ml and the events of its pods.")
STALE_DESCRIPTION = ("No watch event for 21m 0s: its watches may be stuck, so TrainingJobs are not reconciled. "
                     "Check the operator's logs; restarting its pod re-lists everything.")
BUDGET_AT_RISK_DESCRIPTION = (
    "At the throughput it measures, ml/c will cost 60.00 dollars, over spec.budget.maxCostUSD. The condition "
    "BudgetAtRisk has the numbers; budget.onProjectedOverrun: stop makes the operator stop it before the money is spent.")
ABSENT_DESCRIPTION = ("The operator is down or not scraped (check its Deployment and the ServiceMonitor's labels), "
                      "so no alert above can fire.")
ALERT_TESTS = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                {"series": f'trainwright_job_phase{{{JOB},name="a",phase="Failed"}}', "values": "0 0 1x40"},
                {"series": f'trainwright_job_phase{{{JOB},name="b",phase="Pending"}}', "values": "1x40"},
                {"series": f'trainwright_job_phase{{{JOB},name="c",phase="Running"}}', "values": "1x40"},
                {"series": f'trainwright_job_phase{{{JOB},name="d",phase="Running"}}', "values": "0x40"},
                # c spends $5 a minute of a $50 budget; d spent 90% but is no longer running.
                {"series": f'trainwright_job_cost_dollars_total{{{JOB},name="c"}}', "values": "0+5x40"},
                {"series": f'trainwright_job_budget_dollars{{{JOB},name="c"}}', "values": "50x40"},
                {"series": f'trainwright_job_cost_dollars_total{{{JOB},name="d"}}', "values": "45x40"},
                {"series": f'trainwright_job_budget_dollars{{{JOB},name="d"}}', "values": "50x40"},
                # c is projected within its budget, then over it from t=2m; d, not running, far over.
                {"series": f'trainwright_job_projected_cost_dollars{{{JOB},name="c"}}', "values": "40 40 60x38"},
                {"series": f'trainwright_job_projected_cost_dollars{{{JOB},name="d"}}', "values": "80x40"},
                # The operator's last watch event was at t=0 and never again.
                {"series": 'trainwright_operator_last_watch_event_timestamp_seconds{job="op"}', "values": "0x40"},
            ],
            "alert_rule_test": [
                {"eval_time": "1m", "alertname": "TrainwrightJobFailed", "exp_alerts": []},
                {"eval_time": "3m", "alertname": "TrainwrightJobFailed",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "ml", "name": "a", "strategy": "fine-tune"},
                                 "exp_annotations": {"summary": "TrainingJob ml/a failed", "description": "The fine-tune job ml/a is Failed. See kubectl describe tj a -n ml."}}]},
                {"eval_time": "8m", "alertname": "TrainwrightJobBudgetNearlySpent", "exp_alerts": []},
                {"eval_time": "9m", "alertname": "TrainwrightJobBudgetNearlySpent",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "ml", "name": "c", "strategy": "fine-tune"},
                                 "exp_annotations": {"summary": "TrainingJob ml/c spent over 80% of its budget", "description": "ml/c has spent 90% of spec.budget.maxCostUSD; at 100% the operator stops it (phase BudgetExceeded)."}}]},
                {"eval_time": "1m", "alertname": "TrainwrightJobBudgetAtRisk", "exp_alerts": []},
                {"eval_time": "2m", "alertname": "TrainwrightJobBudgetAtRisk",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "ml", "name": "c", "strategy": "fine-tune"},
                                 "exp_annotations": {"summary": "TrainingJob ml/c is projected to overrun its budget",
                                                     "description": BUDGET_AT_RISK_DESCRIPTION}}]},
                {"eval_time": "14m", "alertname": "TrainwrightJobPendingTooLong", "exp_alerts": []},
                {"eval_time": "16m", "alertname": "TrainwrightJobPendingTooLong",
                 "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": "ml", "name": "b", "strategy": "fine-tune"},
                                 "exp_annotations": {"summary": "TrainingJob ml/b has been Pending for 15m", "description": PENDING_DESCRIPTION.format(name="b")}}]},
                {"eval_time": "19m", "alertname": "TrainwrightOperatorWatchStale", "exp_alerts": []},
                {"eval_time": "21m", "alertname": "TrainwrightOperatorWatchStale",
                 "exp_alerts": [{"exp_labels": {"severity": "warning"},
                                 "exp_annotations": {"summary": "The Trainwright operator has seen no watch event for a long time",
                                                     "description": STALE_DESCRIPTION}}]},
                {"eval_time": "30m", "alertname": "TrainwrightOperatorAbsent", "exp_alerts": []},
            ],
        },
        {
            "interval": "1m",
            "input_series": [{"series": 'up{job="trainwright"}', "values": "0x20"}],
            "alert_rule_test": [
                {"eval_time": "9m", "alertname": "TrainwrightOperatorAbsent", "exp_alerts": []},
                {"eval_time": "11m", "alertname": "TrainwrightOperatorAbsent",
                 "exp_alerts": [{"exp_labels": {"severity": "warning"},
                                 "exp_annotations": {"summary": "Prometheus has no metrics from the Trainwright operator",
                                                     "description": ABSENT_DESCRIPTION}}]},
            ],
        },
    ],
}


def test_alerts_fire_when_they_should_and_not_before(helm_cli, promtool, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(helm_cli.template(MONITORING))))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(ALERT_TESTS))
    proc = subprocess.run([str(promtool), "test", "rules", "tests.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _leaves(node: dict, prefix: str = "") -> set[str]:
    """Dotted keys of values.yaml; maps the user fills in (empty, or the catalog's) are leaves."""
    out = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in ("operator.resources", "catalog.gpuTypes",
                                                              "prometheusRule.alertLabels"):
            out |= _leaves(value, f"{path}.")
        else:
            out.add(path)
    return out


def test_install_doc_lists_every_value():
    doc = (CHART.parents[1] / "docs" / "install.md").read_text()
    table = {line.split("|")[1].strip().strip("`") for line in doc.splitlines() if line.startswith("| `")}
    values = _leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert values - table == set(), "values missing from docs/install.md"
    assert {k for k in table if "." in k or k == "imagePullSecrets"} - values == set(), "docs/install.md lists unknown values"


# --- replicas and leader election ------------------------------------------------------------------


def _operator_container(rendered: list[dict]) -> dict:
    (container,) = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _lease_roles(rendered: list[dict]) -> list[dict]:
    return [o for o in by_kind(rendered, "Role") if o["metadata"]["name"].endswith("-leader-election")]


def test_default_is_one_replica_without_leader_election_and_no_lease_role(helm_cli):
    rendered = helm_cli.template()
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(a.startswith("--leader-elect") for a in _operator_container(rendered)["args"])
    assert not _lease_roles(rendered) and not by_kind(rendered, "RoleBinding")


@pytest.mark.parametrize("values", [{"replicaCount": 2}, {"replicaCount": 3, "leaderElection": {"enabled": True}},
                                    {"leaderElection": {"enabled": True}}],
                         ids=["two-replicas", "three-enabled", "one-enabled"])
def test_leader_election_rolls_over_and_passes_the_flag_identity_and_namespace(helm_cli, values):
    rendered = helm_cli.template(values)
    spec = one(rendered, "Deployment")["spec"]
    assert spec["replicas"] == values.get("replicaCount", 1)
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = _operator_container(rendered)
    assert container["args"] == ["--metrics-port=8000", "--health-port=8080", "--leader-elect",
                                 "--leader-election-id=trainwright-operator"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_lease_rbac_is_a_role_in_the_release_namespace_for_that_one_lease(helm_cli):
    rendered = helm_cli.template({"replicaCount": 2}, namespace="ops")
    (role,) = _lease_roles(rendered)
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["trainwright-operator"],
         "verbs": ["get", "update"]},
    ]
    (binding,) = by_kind(rendered, "RoleBinding")
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trainwright", "namespace": "ops"}]
    cluster_role = one(rendered, "ClusterRole")  # nothing about leases cluster-wide
    assert all("coordination.k8s.io" not in rule["apiGroups"] for rule in cluster_role["rules"])


def test_the_lease_the_role_grants_is_the_lease_the_operator_uses_for_any_release_name(helm_cli):
    out = helm_cli.run("template", "ml", str(CHART), "-n", "ops", "--set", "replicaCount=2").stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    (role,) = _lease_roles(rendered)
    lease = role["rules"][1]["resourceNames"][0]
    assert lease == "ml-trainwright-operator"
    assert f"--leader-election-id={lease}" in _operator_container(rendered)["args"]


def test_leader_election_without_rbac_creates_no_role(helm_cli):
    rendered = helm_cli.template({"replicaCount": 2, "rbac": {"create": False}})
    assert not by_kind(rendered, "Role") and not by_kind(rendered, "RoleBinding")
    assert "--leader-elect" in _operator_container(rendered)["args"]


def test_more_than_one_replica_without_leader_election_is_refused(helm_cli):
    proc = helm_cli.run("template", "trainwright", str(CHART), "--set", "replicaCount=2",
                        "--set", "leaderElection.enabled=false", check=False)
    assert proc.returncode != 0 and "replicaCount > 1 needs leaderElection.enabled" in proc.stderr


@pytest.mark.parametrize("flag", ["replicaCount=0", "replicaCount=two", "leaderElection.enabled=yes",
                                  "leaderElection.id=x"])
def test_schema_refuses_bad_replica_and_leader_election_values(helm_cli, flag):
    proc = helm_cli.run("template", "trainwright", str(CHART), "--set", flag, check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr, proc.stderr
