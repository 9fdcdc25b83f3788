"""The chart's CRD template is the generated CRD, gated and kept on uninstall, and not stale."""

from pathlib import Path

import yaml

from trainwright.api.chart import CHART_CRD_PATH, build_chart_crd, render_chart_crd
from trainwright.api.crd import build_crd

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_chart_crd_matches_the_models():
    checked_in = (ROOT / CHART_CRD_PATH).read_text()
    assert checked_in == render_chart_crd(), f"{CHART_CRD_PATH} drifted from trainwright.api: run `trainwright crds`"


def test_chart_crd_is_the_plain_crd_plus_the_keep_annotation():
    chart_crd = build_chart_crd()
    assert chart_crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert chart_crd == build_crd()


def test_chart_crd_is_gated_by_crds_install():
    lines = render_chart_crd().splitlines()
    body = [line for line in lines if not line.startswith("{{")]
    assert lines[1] == "{{- if .Values.crds.install }}" and lines[-1] == "{{- end }}"
    assert yaml.safe_load("\n".join(body))["kind"] == "CustomResourceDefinition"
