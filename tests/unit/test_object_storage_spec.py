"""spec.objectStorage: an s3:// source without a Secret is refused at validation, naming the field."""

import pytest
import yaml

from trainwright.api import ManifestError, parse_job
from trainwright.cli import main


def _s3(job_dict, field="dataset"):
    job_dict["spec"][field]["source"] = "s3://corpus/reviews.jsonl" if field == "dataset" else "s3://models/base"
    return job_dict


@pytest.mark.parametrize("field", ["dataset", "model"])
def test_an_s3_source_without_object_storage_is_refused_naming_the_field(job_dict, field):
    with pytest.raises(ManifestError) as caught:
        parse_job(_s3(job_dict, field))
    assert "spec.objectStorage.secret" in str(caught.value) and f"s3:// {field}.source" in str(caught.value)


def test_an_s3_source_with_a_secret_is_valid(job_dict):
    job_dict = _s3(_s3(job_dict), "model")
    job_dict["spec"]["objectStorage"] = {"secret": "s3-creds", "endpoint": "http://minio.storage:9000", "region": "eu-west-1"}
    storage = parse_job(job_dict).spec.objectStorage
    assert (storage.secret, storage.endpoint, storage.region) == ("s3-creds", "http://minio.storage:9000", "eu-west-1")


@pytest.mark.parametrize("storage, field", [
    ({}, "secret"),
    ({"secret": "Not_A_Name"}, "secret"),
    ({"secret": "s3-creds", "endpoint": "minio:9000"}, "endpoint"),
    ({"secret": "s3-creds", "accessKey": "AKIA"}, "accessKey"),  # keys belong in the Secret, not the spec
])
def test_bad_object_storage_fields_are_named(job_dict, storage, field):
    job_dict["spec"]["objectStorage"] = storage
    with pytest.raises(ManifestError) as caught:
        parse_job(job_dict)
    assert f"spec.objectStorage.{field}" in str(caught.value)


def test_validate_command_refuses_an_s3_source_without_a_secret(job_dict, tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_s3(job_dict)))
    assert main(["validate", str(path)]) == 1
    assert "spec.objectStorage.secret: an s3:// dataset.source needs objectStorage.secret" in capsys.readouterr().err


def test_an_s3_checkpoint_uri_needs_object_storage_and_a_bucket(job_dict):
    job_dict["spec"]["checkpoint"] = {"uri": "s3://checkpoints/sentiment"}
    with pytest.raises(ManifestError) as caught:
        parse_job(job_dict)
    assert "spec.objectStorage.secret: an s3:// checkpoint.uri needs objectStorage.secret" in str(caught.value)
    job_dict["spec"]["objectStorage"] = {"secret": "s3-creds"}
    assert parse_job(job_dict).spec.checkpoint.uri == "s3://checkpoints/sentiment"
    job_dict["spec"]["checkpoint"] = {"uri": "/mnt/checkpoints"}
    with pytest.raises(ManifestError, match="spec.checkpoint.uri"):
        parse_job(job_dict)
