"""The TrainingJob API: pydantic models that define the spec, the status and the CRD."""

from trainwright.api.durations import format_duration, parse_duration
from trainwright.api.manifest import (
    API_VERSION, GROUP, KIND, PLURAL, VERSION, Document, ManifestError, TrainingJob,
    load_documents, parse_job,
)
from trainwright.api.spec import TrainingJobSpec
from trainwright.api.status import FINISHED_PHASES, PHASES, Plan, Progress, TrainingJobStatus

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "Document", "ManifestError",
    "TrainingJob", "TrainingJobSpec", "TrainingJobStatus", "Plan", "Progress", "PHASES",
    "FINISHED_PHASES", "load_documents", "parse_job", "parse_duration", "format_duration",
]
