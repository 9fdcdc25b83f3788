"""The pod contract: what the operator's pods tell the trainer, named once.

The operator writes these (controller/children.py) and the trainer reads them
(trainer/environment.py, kube_reporter.py); docs/trainer.md describes them for people who run
the trainer image themselves.
"""

# Environment variables the trainer reads.
JOB_FILE_ENV = "TRAINWRIGHT_JOB_FILE"  # the resolved job (YAML or JSON), written by the operator
JOB_ENV = "TRAINWRIGHT_JOB"  # the same as JSON in the variable itself (no file)
OUTPUT_DIR_ENV = "TRAINWRIGHT_OUTPUT_DIR"
CHECKPOINT_DIR_ENV = "TRAINWRIGHT_CHECKPOINT_DIR"
PVC_ROOT_ENV = "TRAINWRIGHT_PVC_ROOT"
REPORTERS_ENV = "TRAINWRIGHT_REPORTERS"
METRICS_PORT_ENV = "TRAINWRIGHT_METRICS_PORT"
JOB_NAME_ENV = "TRAINWRIGHT_JOB_NAME"
JOB_NAMESPACE_ENV = "TRAINWRIGHT_JOB_NAMESPACE"
POD_GPUS_ENV = "TRAINWRIGHT_POD_GPUS"  # GPUs the pod was given: the trainer refuses to run without them
TOKEN_CACHE_ENV = "TRAINWRIGHT_TOKEN_CACHE"  # the token cache folder; default: beside the job folders (token_cache.py)
KUBE_API_ENV = "TRAINWRIGHT_KUBE_API"  # outside a pod: where the status reporter finds the API server
KUBE_TOKEN_FILE_ENV = "TRAINWRIGHT_KUBE_TOKEN_FILE"
KUBE_CA_FILE_ENV = "TRAINWRIGHT_KUBE_CA_FILE"
# Object storage (s3:// sources): the AWS SDKs' own names, so tools in the image read them too.
# The two keys come from the Secret spec.objectStorage.secret names (its keys have these names).
OBJECT_STORE_KEY_ID_ENV = "AWS_ACCESS_KEY_ID"
OBJECT_STORE_SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
OBJECT_STORE_ENDPOINT_ENV = "AWS_ENDPOINT_URL"  # spec.objectStorage.endpoint: an S3-compatible server
OBJECT_STORE_REGION_ENV = "AWS_REGION"
OBJECT_STORE_DEFAULT_REGION = "us-east-1"
OBJECT_CACHE_ENV = "TRAINWRIGHT_OBJECT_CACHE"  # where s3:// model folders are copied; default: under the temp folder
# Where each trainer process (the driver, every Ray worker) registers its PID when it starts handling
# SIGTERM; the Ray pods' preStop hook signals the processes registered there (trainer/prestop.py).
PROCESS_DIR_ENV = "TRAINWRIGHT_PROCESS_DIR"

# Where things are in the pod.
JOB_MOUNT = "/etc/trainwright"
JOB_FILE_KEY = "job.yaml"
JOB_FILE = f"{JOB_MOUNT}/{JOB_FILE_KEY}"
# The checkpoint claim, mounted whole (no subPath: kubelet would create that folder as root).
CLAIM_MOUNT = "/mnt/trainwright"
PVC_ROOT = "/mnt/pvc"  # claims named by pvc:// sources, each read-only at PVC_ROOT/CLAIM
OUTPUT_DIR = "/workspace/output"  # without a checkpoint claim: an emptyDir, gone with the pod
METRICS_PORT = 9090
PROCESS_DIR = "/tmp/trainwright-processes"  # on the pod's /tmp emptyDir: one pod's processes
PRE_STOP_COMMAND = ["python", "-m", "trainwright.trainer.prestop"]

# Reporters: a person's run prints and writes metrics.jsonl; a pod also serves /metrics and
# patches its job's status.
LOCAL_REPORTERS = "console,jsonl"
POD_REPORTERS = "jsonl,prometheus,kubernetes"


def claim_checkpoint_dir(job_name: str) -> str:
    return f"{CLAIM_MOUNT}/{job_name}/checkpoints"


def claim_output_dir(job_name: str) -> str:
    """The model and metrics.jsonl, on the claim: they outlive the pod."""
    return f"{CLAIM_MOUNT}/{job_name}/output"
