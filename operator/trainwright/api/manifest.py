"""Whole TrainingJob documents: reading them from YAML and explaining what is wrong with them."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainwright.api.spec import NAME_PATTERN, TrainingJobSpec
from trainwright.api.status import TrainingJobStatus

GROUP = "trainwright.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PLURAL = "trainingjobs"
SINGULAR = "trainingjob"
SHORT_NAMES = ["tj"]
MAX_NAME_LENGTH = 50  # leaves room for child suffixes within the 63-character label limit


class Metadata(BaseModel):
    """The parts of ObjectMeta that `validate` checks; the rest passes through."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)
    namespace: str | None = Field(None, max_length=63, pattern=NAME_PATTERN)


class TrainingJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    apiVersion: Literal["trainwright.dev/v1alpha1"]
    kind: Literal["TrainingJob"]
    metadata: Metadata
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None


class ManifestError(Exception):
    """A document that is not a valid TrainingJob; ``problems`` are one line each: 'path: reason'."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class Document:
    source: str  # "file.yaml" or "file.yaml#2" for the second document
    job: TrainingJob


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def describe_validation_error(error: ValidationError) -> list[str]:
    """One 'field.path: reason' line per problem, in the user's camelCase names."""
    lines = []
    for item in error.errors(include_url=False):
        path = _field_path(item["loc"]) or "(document)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "literal_error" and path in ("apiVersion", "kind"):
            message = f"must be {API_VERSION if path == 'apiVersion' else KIND}, got {item['input']!r}"
        if item["type"] == "cel_rule":  # cross-field rules name their own fields
            lines.extend(f"{'.'.join(x for x in (path, f) if x)}: {m}" for f, m in item["ctx"]["broken"])
            continue
        lines.append(f"{path}: {message}")
    return lines


def parse_job(document: object, source: str = "<input>") -> TrainingJob:
    """A TrainingJob from one parsed YAML document, or ManifestError."""
    if not isinstance(document, dict):
        raise ManifestError(source, [f"(document): expected a mapping, got {type(document).__name__}"])
    try:
        # As the API server sees it: JSON (YAML's dates become strings, as kubectl sends them),
        # and strict types (no "3" for 3, no 1 for true), so both accept and refuse the same.
        wire = json.dumps(document, default=str, allow_nan=False)
    except (ValueError, TypeError) as error:
        raise ManifestError(source, [f"(document): not representable as JSON: {error}"]) from None
    try:
        return TrainingJob.model_validate_json(wire, strict=True)
    except ValidationError as error:
        raise ManifestError(source, describe_validation_error(error)) from None


def load_documents(path: str | Path) -> list[Document]:
    """Every TrainingJob in a YAML file; ManifestError lists all problems of all documents."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ManifestError(str(path), [f"(file): cannot read: {error.strerror}"]) from None
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ManifestError(str(path), [f"(yaml): {where}{getattr(error, 'problem', None) or error}"]) from None
    if not raw:
        raise ManifestError(str(path), ["(file): no documents"])
    documents, problems = [], []
    for index, item in enumerate(raw):
        source = str(path) if len(raw) == 1 else f"{path}#{index + 1}"
        try:
            documents.append(Document(source, parse_job(item, source)))
        except ManifestError as error:
            problems.extend(f"{source}: {p}" if len(raw) > 1 else p for p in error.problems)
    if problems:
        raise ManifestError(str(path), problems)
    return documents
