"""Names the operator shares with its children, its tests and the chart: one place for each."""

from trainwright.api import GROUP, PLURAL, VERSION

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "trainwright"
NAME_LABEL = "app.kubernetes.io/name"
TRAINER_NAME = "trainwright-trainer"
JOB_LABEL = f"{GROUP}/job"
STRATEGY_LABEL = f"{GROUP}/strategy"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PASSED_THROUGH_LABELS = (KUEUE_QUEUE_LABEL,)

# kopf keeps its own state in annotations under our group, chosen once at startup.
KOPF_PREFIX = GROUP
FINALIZER = f"{GROUP}/finalizer"

TRAINER_CONTAINER = "trainer"
TRAINER_PORT = 9090
JOB_FILE_KEY = "job.yaml"
JOB_MOUNT = "/etc/trainwright"
# The checkpoint claim, mounted whole (no subPath: kubelet would create that folder as root):
# a job's checkpoints and outputs live in CLAIM/JOB/checkpoints and CLAIM/JOB/output.
CLAIM_MOUNT = "/mnt/trainwright"
PVC_ROOT = "/mnt/pvc"
OUTPUT_DIR = "/workspace/output"
DEFAULT_TRAINER_IMAGE = "ghcr.io/trainwright/trainer:0.1.0"
NON_ROOT_UID = 1000

RAY_GROUP, RAY_VERSION, RAY_JOBS = "ray.io", "v1", "rayjobs"

API = (GROUP, VERSION, PLURAL)
RECONCILE_WORKERS = 64  # jobs handled at once: enough to keep the API server busy; more only lengthens its queue (bench: p99)
