"""The reconcile loop's parse cache: a job is parsed again only when its spec, labels or plan change."""

import copy

from trainwright.api import parse_job
from trainwright.controller.reconciler import ParsedJobs
from trainwright.planner import default_catalog, plan_job

KEY = ("ml", "job")


def body_of(job_dict, generation=1, uid="u1"):
    plan = plan_job(parse_job(job_dict).spec, default_catalog()).to_wire()
    body = copy.deepcopy(job_dict)
    body["metadata"].update(uid=uid, generation=generation, namespace="ml")
    body["status"] = {"plan": plan, "launchedAt": "2026-12-02T00:00:00Z"}
    return body


def test_unchanged_job_is_not_parsed_again(job_dict):
    parsed = ParsedJobs()
    first = parsed.get(KEY, body_of(job_dict))
    again = parsed.get(KEY, body_of(job_dict))  # a new dict, as each watch event brings
    assert again[0] is first[0] and again[1] is first[1]


def test_a_new_generation_labels_or_uid_parse_the_spec_again(job_dict):
    parsed = ParsedJobs()
    job, _ = parsed.get(KEY, body_of(job_dict))
    changed = copy.deepcopy(job_dict)
    changed["spec"]["training"] = {**changed["spec"].get("training", {}), "epochs": 7}
    assert parsed.get(KEY, body_of(changed, generation=2))[0].spec.training.epochs == 7
    labelled = body_of(changed, generation=2)
    labelled["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "q"}
    assert parsed.get(KEY, labelled)[0] is not parsed.get(KEY, body_of(changed, generation=2))[0]
    assert parsed.get(KEY, body_of(job_dict, uid="u2"))[0] is not job  # deleted and made again


def test_a_changed_plan_is_validated_again_and_forget_drops_the_job(job_dict):
    parsed = ParsedJobs()
    body = body_of(job_dict)
    _, plan = parsed.get(KEY, body)
    body["status"]["plan"] = {**body["status"]["plan"], "gpus": plan.gpus + 1}
    job, replanned = parsed.get(KEY, body)
    assert replanned.gpus == plan.gpus + 1
    parsed.forget(KEY)
    assert parsed.get(KEY, body)[0] is not job
