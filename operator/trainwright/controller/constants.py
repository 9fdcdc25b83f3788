"""Names the operator shares with its children, its tests and the chart: one place for each.
What the trainer in a pod reads is in trainwright.api.pod_contract, shared with the trainer."""

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

TRAINER_CONTAINER = "trainer"  # env vars, mounts and ports the trainer reads: trainwright.api.pod_contract
DEFAULT_TRAINER_IMAGE = "ghcr.io/trainwright/trainer:0.1.0"
NON_ROOT_UID = 1000

RAY_GROUP, RAY_VERSION, RAY_JOBS = "ray.io", "v1", "rayjobs"
# Kueue: a launcher labelled with a queue is created suspended and Kueue un-suspends it when it
# admits it; while it waits, its Workload (v1beta2, the storage version since Kueue 0.16; read,
# not watched) says why. Kueue labels each Workload with the UID of the job it was made for.
KUEUE_GROUP, KUEUE_VERSION, KUEUE_WORKLOADS = "kueue.x-k8s.io", "v1beta2", "workloads"
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"

API = (GROUP, VERSION, PLURAL)
RECONCILE_WORKERS = 64  # jobs handled at once: enough to keep the API server busy; more only lengthens its queue (bench: p99)

# Finished jobs' measurements, which calibrate new plans: one ConfigMap in the operator's namespace.
CALIBRATION_CONFIG_MAP = "trainwright-calibration"
CALIBRATION_KEY = "runs.json"
