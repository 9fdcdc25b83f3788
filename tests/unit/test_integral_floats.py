"""JSON has one number type: the API server's schema check takes 2.0 for an integer field, so the
models do too (strict otherwise: 2.5, "2" and true stay refused). Found by test_crd_agreement."""

import pytest

from trainwright.api import ManifestError, parse_job


@pytest.mark.parametrize("section, field, value, expected", [
    ("training", "epochs", 2.0, 2),
    ("dataset", "samples", 1000.0, 1000),
    ("resources", "gpus", 1.0, 1),
])
def test_an_integral_float_is_that_integer(job_dict, section, field, value, expected):
    job_dict["spec"][section][field] = value
    parsed = getattr(getattr(parse_job(job_dict).spec, section), field)
    assert parsed == expected and type(parsed) is int


@pytest.mark.parametrize("value", [2.5, "2", True])
def test_other_non_integers_stay_refused(job_dict, value):
    job_dict["spec"]["training"]["epochs"] = value
    with pytest.raises(ManifestError, match="spec.training.epochs"):
        parse_job(job_dict)
