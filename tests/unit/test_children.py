"""Child builders: deterministic names, owner references, GPU requests, restricted pods, least privilege."""

import json

import pytest

from trainwright.api import parse_job
from trainwright.controller.children import LaunchSettings, build_children, build_pod_spec, dependencies_of
from trainwright.planner import default_catalog, plan_job

UID = "1234-uid"


def children_of(job_dict):
    job = parse_job(job_dict)
    plan = plan_job(job.spec, default_catalog())
    return job, plan, build_children(job, plan, UID, LaunchSettings(trainer_image="trainer:test"))


def test_children_have_deterministic_names_and_owner_references(job_dict):
    _, _, children = children_of(job_dict)
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("ConfigMap", "sentiment-job"), ("ServiceAccount", "sentiment-trainer"), ("Role", "sentiment-trainer"),
        ("RoleBinding", "sentiment-trainer"), ("Job", "sentiment-trainer")]
    for child in children:
        [owner] = child["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "name": "sentiment",
                         "uid": UID, "controller": True, "blockOwnerDeletion": True}
        assert child["metadata"]["namespace"] == "ml"
    assert children == children_of(job_dict)[2]


def test_role_allows_patching_only_this_jobs_status(job_dict):
    _, _, children = children_of(job_dict)
    role = next(c for c in children if c["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": ["trainwright.dev"], "resources": ["trainingjobs/status"],
                              "resourceNames": ["sentiment"], "verbs": ["get", "patch"]}]


def test_config_map_holds_the_resolved_job(job_dict):
    job, plan, children = children_of(job_dict)
    resolved = json.loads(children[0]["data"]["job.yaml"])
    assert parse_job(resolved).spec == job.spec
    assert resolved["status"]["plan"] == plan.to_wire()


def test_fine_tune_asking_for_four_gpus_gets_one(job_dict):
    job_dict["spec"]["resources"]["gpus"] = 4
    _, plan, children = children_of(job_dict)
    container = children[-1]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_cpu_job_requests_no_gpu(job_dict):
    job_dict["spec"]["resources"]["gpus"] = 0
    _, _, children = children_of(job_dict)
    container = children[-1]["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["requests"]


def test_trainer_pod_is_restricted_with_writable_scratch_only(job_dict):
    job_dict["spec"]["checkpoint"] = {"pvc": "ckpt"}
    _, _, children = children_of(job_dict)
    pod = children[-1]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "subPath" not in mounts["/mnt/trainwright"] and not mounts["/mnt/trainwright"].get("readOnly")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRAINWRIGHT_CHECKPOINT_DIR"] == "/mnt/trainwright/sentiment/checkpoints"
    assert env["TRAINWRIGHT_OUTPUT_DIR"] == "/mnt/trainwright/sentiment/output"
    assert mounts["/mnt/pvc/data"]["readOnly"] is True
    assert pod["serviceAccountName"] == "sentiment-trainer"


def test_kueue_queue_label_passes_through_to_the_launcher(job_dict):
    job_dict["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a", "other": "x"}
    _, _, children = children_of(job_dict)
    labels = children[-1]["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a" and "other" not in labels


def test_multi_node_scratch_becomes_a_rayjob_of_whole_nodes(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"].update(gpus=16, gpusPerNode=8)
    _, plan, children = children_of(job_dict)
    ray_job = children[-1]
    assert ray_job["kind"] == "RayJob" and ray_job["apiVersion"] == "ray.io/v1"
    cluster = ray_job["spec"]["rayClusterSpec"]
    [workers] = cluster["workerGroupSpecs"]
    assert workers["replicas"] == 2
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert "nvidia.com/gpu" not in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("gpus", [0, 1, 8])
def test_pod_spec_gpu_limits_match_the_plan(job_dict, gpus):
    job = parse_job(job_dict)
    plan = plan_job(job.spec, default_catalog())
    container = build_pod_spec(job, plan, LaunchSettings(), gpus)["containers"][0]
    assert container["resources"]["limits"].get("nvidia.com/gpu", "0") == str(gpus)


def test_rayjob_submitter_runs_kuberays_own_submit_command_with_a_small_request(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"].update(gpus=16, gpusPerNode=8)
    ray_job = children_of(job_dict)[2][-1]
    submitter = ray_job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    # KubeRay fills in `ray job submit` only where the container has no command of its own.
    assert "command" not in submitter and "args" not in submitter
    assert submitter["resources"]["requests"] == {"cpu": "100m", "memory": "512Mi"}
    assert "nvidia.com/gpu" not in submitter["resources"].get("limits", {})


def test_ray_head_and_workers_are_probed_over_http_not_with_wget(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"].update(gpus=16, gpusPerNode=8)
    cluster = children_of(job_dict)[2][-1]["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in head["ports"]} == {"gcs-server": 6379, "dashboard": 8265, "client": 10001}
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        container = template["spec"]["containers"][0]
        assert "command" not in container
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert probe["httpGet"] == {"path": "/api/local_raylet_healthz", "port": 52365}


@pytest.mark.parametrize(("cores", "quantity"), [(4, "4"), (1.0, "1"), (0.5, "500m"), (1.25, "1250m"), (0.001, "1m")])
def test_cpu_requests_are_whole_cores_or_millicores(job_dict, cores, quantity):
    job_dict["spec"]["resources"].update(gpus=0, cpusPerWorker=cores)
    job = parse_job(job_dict)
    container = build_pod_spec(job, plan_job(job.spec, default_catalog()), LaunchSettings(), 0)["containers"][0]
    assert container["resources"]["requests"]["cpu"] == quantity


def test_cpu_rayjob_runs_workers_per_pod_on_cpu_and_none_on_the_head(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"] = {"gpus": 0, "workers": 4, "workersPerPod": 2, "cpusPerWorker": 0.5}
    cluster = children_of(job_dict)[2][-1]["spec"]["rayClusterSpec"]
    [workers] = cluster["workerGroupSpecs"]
    assert workers["groupName"] == "cpu-workers" and workers["replicas"] == 2
    assert workers["rayStartParams"] == {"num-cpus": "2"}
    assert workers["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1"
    assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0", "num-gpus": "0"}
    assert "nvidia.com/gpu" not in workers["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_single_pod_cpu_job_requests_cpu_for_every_worker(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"] = {"gpus": 0, "workers": 3, "cpusPerWorker": 2}
    launcher = children_of(job_dict)[2][-1]
    assert launcher["kind"] == "Job"
    assert launcher["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "6"


def test_gpu_rayjob_keeps_its_gpu_worker_group_and_no_worker_on_the_head(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"].update(gpus=16, gpusPerNode=8, cpusPerWorker=2)
    cluster = children_of(job_dict)[2][-1]["spec"]["rayClusterSpec"]
    [workers] = cluster["workerGroupSpecs"]
    assert workers["groupName"] == "gpu-workers" and workers["rayStartParams"] == {"num-gpus": "8"}
    assert workers["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "16"
    assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0", "num-gpus": "0"}


def test_without_a_checkpoint_claim_outputs_stay_in_the_pods_emptydir(job_dict):
    job_dict["spec"].pop("checkpoint", None)
    pod = children_of(job_dict)[2][-1]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TRAINWRIGHT_OUTPUT_DIR"] == "/workspace/output" and "TRAINWRIGHT_CHECKPOINT_DIR" not in env
    assert not any("persistentVolumeClaim" in v and v["persistentVolumeClaim"]["claimName"] == "ckpt" for v in pod["volumes"])
    assert "/mnt/trainwright" not in {m["mountPath"] for m in container["volumeMounts"]}


def test_a_job_across_pods_without_a_shared_claim_is_refused_before_launch(job_dict):
    from trainwright.controller.reconcile import launch_blocker

    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"] = {"gpus": 0, "workers": 2, "workersPerPod": 1}
    job_dict["spec"].pop("checkpoint", None)
    job = parse_job(job_dict)
    reason, message = launch_blocker(job.spec, plan_job(job.spec, default_catalog()), kuberay_installed=True)
    assert reason == "SharedClaimMissing" and message.startswith("spec.checkpoint.pvc: a job across 2 pods")


@pytest.mark.parametrize("model, seconds", [
    # LoRA on distilbert (66M): the weights alone are written, 264 MB at 500 MB/s, doubled: 1.06 s
    ({"source": "hf://distilbert-base-uncased", "task": "sequence-classification", "adapter": {"rank": 16}}, 62),
    # full fine-tune of an 8B model: weights and two Adam moments, 96 GB at 500 MB/s, doubled: 385 s
    ({"source": "hf://meta-llama/Llama-3.1-8B", "task": "causal-lm"}, 446),
    # a pvc:// model without model.parameters: its size is unknown
    ({"source": "pvc://models/mine", "task": "causal-lm"}, 300),
])
def test_the_grace_period_lets_the_trainer_write_its_checkpoint_on_sigterm(job_dict, model, seconds):
    job_dict["spec"]["model"] = model
    _, _, children = children_of(job_dict)
    assert children[-1]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == seconds


def test_every_pod_of_a_rayjob_gets_the_grace_period(job_dict):
    job_dict["spec"].update(strategy="scratch", resources={"gpus": 16, "gpuType": "nvidia-h100"},
                            model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 12, "hidden": 768}},
                            checkpoint={"pvc": "ckpt"})
    _, plan, children = children_of(job_dict)
    assert plan.launcher == "rayjob"
    cluster = children[-1]["spec"]["rayClusterSpec"]
    periods = {cluster["headGroupSpec"]["template"]["spec"]["terminationGracePeriodSeconds"],
               cluster["workerGroupSpecs"][0]["template"]["spec"]["terminationGracePeriodSeconds"]}
    assert periods == {66}  # GPT-2 small: 124M x 12 bytes at 500 MB/s = 3 s, doubled, plus 60
    job_dict["spec"].update(checkpoint={"pvc": "ckpt", "uri": "s3://checkpoints/gpt"}, objectStorage={"secret": "s3-creds"})
    cluster = children_of(job_dict)[2][-1]["spec"]["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 69  # and 3 s to copy it


def test_ray_head_and_workers_stop_their_trainers_in_a_prestop_hook_and_the_submitter_does_not(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"].update(gpus=16, gpusPerNode=8)
    ray_job = children_of(job_dict)[2][-1]["spec"]
    cluster = ray_job["rayClusterSpec"]
    for template in (cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]):
        [container] = template["spec"]["containers"]
        assert container["lifecycle"] == {"preStop": {"exec": {"command": ["python", "-m", "trainwright.trainer.prestop"]}}}
        assert {"name": "TRAINWRIGHT_PROCESS_DIR", "value": "/tmp/trainwright-processes"} in container["env"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # writable under a read-only root
    assert "lifecycle" not in ray_job["submitterPodTemplate"]["spec"]["containers"][0]


def _s3_job(job_dict, **storage):
    job_dict["spec"]["dataset"]["source"] = "s3://corpus/reviews.jsonl"
    job_dict["spec"]["objectStorage"] = {"secret": "s3-creds", **storage}
    return job_dict


def test_object_storage_keys_reach_the_trainer_by_secret_reference_only(job_dict):
    _, _, children = children_of(_s3_job(job_dict, endpoint="http://minio.storage:9000", region="eu-west-1"))
    [container] = next(c for c in children if c["kind"] == "Job")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": key}}}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
    assert env["AWS_REGION"]["value"] == "eu-west-1"


def test_without_endpoint_or_region_the_trainer_gets_only_the_keys(job_dict):
    _, _, children = children_of(_s3_job(job_dict))
    [container] = next(c for c in children if c["kind"] == "Job")["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert "AWS_ACCESS_KEY_ID" in names and "AWS_SECRET_ACCESS_KEY" in names
    assert "AWS_ENDPOINT_URL" not in names and "AWS_REGION" not in names


def test_a_job_without_object_storage_gets_no_aws_variables(job_dict):
    _, _, children = children_of(job_dict)
    [container] = next(c for c in children if c["kind"] == "Job")["spec"]["template"]["spec"]["containers"]
    assert not [e for e in container["env"] if e["name"].startswith("AWS_")]


def test_the_pods_of_a_rayjob_that_read_data_get_the_object_storage_keys_and_the_submitter_not(job_dict):
    job_dict = _s3_job(job_dict)
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {
        "family": "gpt", "layers": 24, "hidden": 2048, "vocabSize": 32000, "contextLength": 2048}})
    job_dict["spec"]["resources"] = {"gpus": 16, "gpuType": "nvidia-h100", "gpusPerNode": 8}
    job_dict["spec"]["checkpoint"] = {"pvc": "ckpt"}
    _, _, children = children_of(job_dict)
    ray = next(c for c in children if c["kind"] == "RayJob")["spec"]
    workers = [g["template"]["spec"] for g in ray["rayClusterSpec"]["workerGroupSpecs"]]
    for spec in [ray["rayClusterSpec"]["headGroupSpec"]["template"]["spec"], *workers]:
        refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in spec["containers"][0]["env"] if "valueFrom" in e]
        assert refs == ["s3-creds", "s3-creds"]
    submitter = ray["submitterPodTemplate"]["spec"]["containers"][0]
    assert not [e for e in submitter["env"] if e["name"].startswith("AWS_")]


def test_the_operator_never_looks_up_the_object_storage_secret(job_dict):
    assert [d for d in dependencies_of(parse_job(_s3_job(job_dict))) if d[1] == "Secret"] == []
