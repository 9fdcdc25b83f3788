"""The API models accept good manifests and name the field and the reason for bad ones."""

import pytest

from trainwright.api import ManifestError, load_documents, parse_job
from trainwright.api.durations import parse_duration


def problems_of(document) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_job(document)
    return caught.value.problems


def test_valid_manifest_parses_with_defaults(job_dict):
    job = parse_job(job_dict)
    assert job.spec.training.seed == 0
    assert job.spec.checkpoint.everySteps == 500
    assert job.spec.budget.max_duration_seconds() == 6 * 3600


def test_wire_form_round_trips(job_dict):
    job = parse_job(job_dict)
    again = parse_job({**job_dict, "spec": job.spec.to_wire()})
    assert again.spec == job.spec


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.update(apiVersion="v1"), "apiVersion: must be trainwright.dev/v1alpha1"),
    (lambda d: d.update(kind="Job"), "kind: must be TrainingJob"),
    (lambda d: d["spec"].update(bogus=1), "spec.bogus: unknown field"),
    (lambda d: d["spec"]["training"].update(epochs="three"), "spec.training.epochs: Input should be a valid integer"),
    (lambda d: d["spec"]["training"].update(epochs=-1), "spec.training.epochs: Input should be greater than or equal to 1"),
    (lambda d: d["spec"]["resources"].update(gpus=10**9), "spec.resources.gpus: Input should be less than or equal to 4096"),
    (lambda d: d["spec"]["dataset"].update(validationSplit=1.5), "spec.dataset.validationSplit: Input should be less than 1"),
    (lambda d: d["spec"]["budget"].update(maxDuration="six hours"), "spec.budget.maxDuration: String should match pattern"),
    (lambda d: d["spec"]["model"].update(source="ftp://x"), "spec.model.source: String should match pattern"),
    (lambda d: d["spec"].update(strategy="magic"), "spec.strategy: Input should be 'fine-tune', 'scratch', 'hybrid' or 'auto'"),
    (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name: String should match pattern"),
    (lambda d: d["metadata"].update(name="x" * 51), "metadata.name: String should have at most 50 characters"),
    (lambda d: d["spec"]["model"].update(adapter={"rank": 0}), "spec.model.adapter.rank: Input should be greater than or equal to 1"),
    (lambda d: d["spec"].pop("dataset"), "spec.dataset: Field required"),
])
def test_bad_field_is_named_with_reason(job_dict, mutate, expected):
    mutate(job_dict)
    assert any(p.startswith(expected) for p in problems_of(job_dict)), problems_of(job_dict)


@pytest.mark.parametrize("strategy, model, expected", [
    ("scratch", {"task": "causal-lm"}, "spec.model.architecture: strategy scratch needs model.architecture"),
    ("fine-tune", {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}},
     "spec.model.source: strategies fine-tune and hybrid need a pre-trained model.source"),
    ("hybrid", {"source": "hf://gpt2", "task": "causal-lm"}, "spec.model.head: strategy hybrid needs model.head"),
    ("fine-tune", {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}]},
     "spec.model.head: a head is only used with strategy hybrid"),
    ("hybrid", {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "relu"}], "adapter": {}},
     "spec.model.adapter: an adapter is only used with strategy fine-tune"),
    ("auto", {"task": "causal-lm"}, "spec.model: needs a pre-trained source or an architecture"),
    ("fine-tune", {"source": "hf://gpt2", "task": "causal-lm", "numLabels": 3},
     "spec.model.numLabels: numLabels only applies to sequence-classification"),
    ("hybrid", {"source": "hf://gpt2", "task": "causal-lm", "head": [{"type": "linear"}]},
     "spec.model.head[0].size: a linear layer needs size"),
    ("scratch", {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 100, "heads": 3}},
     "spec.model.architecture.hidden: hidden must be a multiple of heads"),
])
def test_contradictory_fields_are_refused(job_dict, strategy, model, expected):
    job_dict["spec"].update(strategy=strategy, model=model)
    problems = problems_of(job_dict)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_broken_cross_field_rule_is_reported_at_once(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "adapter": {}})
    problems = problems_of(job_dict)
    assert "spec.model.architecture: strategy scratch needs model.architecture" in problems
    assert "spec.model.adapter: an adapter is only used with strategy fine-tune (or auto)" in problems


def test_load_documents_names_the_document_in_a_multi_document_file(tmp_path, job_dict):
    import yaml

    bad = {**job_dict, "kind": "Job"}
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump_all([job_dict, bad]))
    with pytest.raises(ManifestError) as caught:
        load_documents(path)
    assert caught.value.problems == [f"{path}#2: kind: must be TrainingJob, got 'Job'"]


@pytest.mark.parametrize("text, expected", [
    ("key: [unclosed", "(yaml): line 1, column 15: "),
    ("", "(file): no documents"),
    ("- 1\n- 2\n", "(document): expected a mapping, got list"),
])
def test_malformed_files_get_one_clear_line(tmp_path, text, expected):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        load_documents(path)
    assert caught.value.problems[0].startswith(expected)


def test_missing_file_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        load_documents(tmp_path / "absent.yaml")


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("6h", 21600), ("1h30m", 5400), ("2d", 172800), ("1.5h", 5400)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "6", "h", "6 hours", "-1h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(("resources", "expected"), [
    ({"gpus": 2, "workers": 2}, "spec.resources.workers: workers applies to CPU jobs (gpus: 0)"),
    ({"gpus": 1, "workersPerPod": 1}, "spec.resources.workersPerPod: workersPerPod applies to CPU jobs (gpus: 0)"),
    ({"gpus": 0, "workers": 3, "workersPerPod": 2}, "spec.resources.workersPerPod: workers must be a multiple of workersPerPod"),
])
def test_cpu_worker_fields_are_checked_against_the_gpus(job_dict, resources, expected):
    job_dict["spec"]["resources"] = resources
    assert any(p.startswith(expected) for p in problems_of(job_dict)), problems_of(job_dict)


def test_a_null_field_is_its_default_and_an_assignment_keeps_every_field(job_dict):
    job_dict["spec"]["checkpoint"] = {"pvc": None, "keep": None, "everySteps": 50}
    job = parse_job(job_dict)
    assert (job.spec.checkpoint.pvc, job.spec.checkpoint.keep) == (None, 3)
    job.spec.checkpoint.keep = 1  # validated on assignment, with the whole object
    assert (job.spec.checkpoint.keep, job.spec.checkpoint.pvc, job.spec.checkpoint.uri) == (1, None, None)
