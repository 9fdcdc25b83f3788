"""A pod given GPUs never trains on its CPUs instead."""

import pytest

from trainwright.trainer.environment import check_pod_gpus, pod_gpus
from trainwright.trainer.errors import TrainerError


@pytest.mark.parametrize(("given", "visible"), [(0, 0), (0, 8), (1, 1), (4, 8)])
def test_a_pod_whose_gpus_are_visible_may_train(given, visible):
    check_pod_gpus(given, visible)


@pytest.mark.parametrize(("given", "visible"), [(1, 0), (8, 4)])
def test_a_pod_given_gpus_that_cuda_cannot_see_refuses_to_train(given, visible):
    with pytest.raises(TrainerError) as caught:
        check_pod_gpus(given, visible)
    assert "status.plan.gpus" in str(caught.value) and f"given {given} GPU" in str(caught.value)


def test_pod_gpus_come_from_the_environment_and_default_to_none():
    assert pod_gpus({}) == 0 and pod_gpus({"TRAINWRIGHT_POD_GPUS": "2"}) == 2
    with pytest.raises(TrainerError, match="TRAINWRIGHT_POD_GPUS"):
        pod_gpus({"TRAINWRIGHT_POD_GPUS": "two"})
