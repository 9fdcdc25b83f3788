"""The local cluster for tests and development: a real control plane, fake (kwok) nodes, and
optionally one real node with images built from this tree.

Development and test infrastructure only: it lives under ``hack/`` and ships in neither the
wheel nor the images. Tests get it on ``sys.path`` from pytest's ``pythonpath`` setting;
scripts add ``hack/`` themselves.
"""

from devcluster.controlplane import (  # noqa: F401 - the package's public names
    ANN_COMPLETE,
    ANN_DURATION,
    ANN_EXIT_CODE,
    ANN_FAIL,
    GPU_PRODUCT,
    HELM_VERSION,
    KUBE_VERSION,
    BinariesMissing,
    ControlPlane,
    ControlPlaneError,
    OperatorProcess,
    default_bin_dir,
    fake_nodes,
    find_binaries,
    free_port,
    wait_for,
)
from devcluster.kueue import Kueue, KueueMissing, find_kueue  # noqa: F401 - Kueue as a host process
