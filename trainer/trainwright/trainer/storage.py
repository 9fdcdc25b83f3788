"""Objects in S3 or an S3-compatible server: dataset files read as streams, model folders copied,
checkpoints copied both ways (remote_checkpoints.py).

The pod gets its credentials from the Secret named by `spec.objectStorage.secret` (the
operator maps its AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY into the environment) and the
endpoint and region as plain variables; outside a pod a person sets the same variables.
Errors name the spec field and say what to fix; the secret key never appears in one.

The client is obstore (Rust's object_store): no Python dependencies, so it sits beside the
operator's pinned kubernetes client, which s3fs's botocore cannot (python-dateutil <3 vs >=3).
"""

import datetime
import io
import json
import os
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Mapping

from trainwright.api import pod_contract as pod
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.sources import Source

SECRET_FIELD = "spec.objectStorage.secret"
READ_BUFFER = 4 * 1024 * 1024  # bytes fetched per ranged GET: few round trips, bounded memory
BUFFER = 64 * 1024  # the BufferedReader's own: readline's copies, not network round trips


@dataclass(frozen=True)
class Credentials:
    key_id: str
    secret: str
    endpoint: str | None
    region: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], field: str) -> "Credentials":
        missing = [name for name in (pod.OBJECT_STORE_KEY_ID_ENV, pod.OBJECT_STORE_SECRET_KEY_ENV) if not env.get(name)]
        if missing:
            raise TrainerError(field, f"s3:// needs {' and '.join(missing)} in the environment "
                                      f"(in a pod: keys of the Secret named by {SECRET_FIELD})")
        return cls(env[pod.OBJECT_STORE_KEY_ID_ENV], env[pod.OBJECT_STORE_SECRET_KEY_ENV],
                   env.get(pod.OBJECT_STORE_ENDPOINT_ENV) or None,
                   env.get(pod.OBJECT_STORE_REGION_ENV) or pod.OBJECT_STORE_DEFAULT_REGION)

    def __repr__(self) -> str:  # never the secret, even in a traceback's locals
        return f"Credentials(key_id={self.key_id!r}, endpoint={self.endpoint!r}, region={self.region!r})"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


def split_url(text: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b")."""
    bucket, _, key = text.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


class Bucket:
    """One bucket through one client; every failure becomes a TrainerError naming `field`."""

    def __init__(self, source: Source, env: Mapping[str, str] | None = None):
        from obstore.store import S3Store

        self.source = source
        self.field = source.field
        self.name, self.key = split_url(source.text)
        self.credentials = Credentials.from_env(os.environ if env is None else env, self.field)
        config = {"access_key_id": self.credentials.key_id, "secret_access_key": self.credentials.secret,
                  "region": self.credentials.region}
        if self.credentials.endpoint:
            config["endpoint"] = self.credentials.endpoint
            config["virtual_hosted_style_request"] = False  # S3-compatible servers: bucket in the path
        self.store = S3Store(self.name, config=config,
                             client_options={"allow_http": (self.credentials.endpoint or "").startswith("http://")},
                             retry_config={"max_retries": 3, "retry_timeout": datetime.timedelta(seconds=30)})

    def head(self, key: str) -> ObjectInfo | None:
        """The object at `key`, or None when there is none."""
        import obstore

        try:
            meta = obstore.head(self.store, key)
        except FileNotFoundError:
            return None
        except Exception as error:
            if _denied(error) and _s3_code(str(error)) is None:  # a HEAD answer has no body:
                self.folder(key)  # a listing's says which code (InvalidAccessKeyId, SignatureDoesNotMatch)
            raise self.error(error, key) from None
        return ObjectInfo(meta["path"], meta["size"], meta["e_tag"] or str(meta["last_modified"]))

    def folder(self, prefix: str) -> list[ObjectInfo]:
        """The objects under the folder `prefix`, in key order."""
        import obstore

        try:
            found = [ObjectInfo(m["path"], m["size"], m["e_tag"] or str(m["last_modified"]))
                     for chunk in obstore.list(self.store, prefix=prefix or None) for m in chunk]
        except Exception as error:
            raise self.error(error, prefix) from None
        return sorted(found, key=lambda o: o.key)

    def objects(self) -> list[ObjectInfo]:
        """The source's object, or the objects under it as a folder; an error when there are none."""
        single = self.head(self.key) if self.key else None
        if single is not None:
            return [single]
        found = self.folder(self.key)  # also tells a missing bucket from a missing key
        if not found:
            raise TrainerError(self.field, f"{self.source.text}: no such object or folder in bucket {self.name!r}")
        return found

    def open(self, info: ObjectInfo) -> BinaryIO:
        """A buffered binary stream over the object: read in READ_BUFFER ranges, never whole."""
        return io.BufferedReader(_RangeReader(self, info), buffer_size=BUFFER)

    def download(self, info: ObjectInfo, target: Path) -> None:
        import obstore

        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as out:
                for chunk in obstore.get(self.store, info.key).stream(min_chunk_size=READ_BUFFER):
                    out.write(chunk)
        except Exception as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno is not None:
                raise  # the local disk, not the server: local_copy says so
            raise self.error(error, info.key) from None
        partial.replace(target)

    def upload(self, path: Path, key: str) -> None:
        """The local file at `path` as the object `key` (multipart for large files: obstore's put)."""
        import obstore

        try:
            obstore.put(self.store, key, path)
        except Exception as error:
            raise self.error(error, key) from None

    def delete(self, keys: list[str]) -> None:
        import obstore

        if keys:
            try:
                obstore.delete(self.store, keys)
            except Exception as error:
                raise self.error(error, keys[0]) from None

    def error(self, error: Exception, key: str) -> TrainerError:
        """What went wrong, in the user's terms: access, bucket, object, or the server."""
        url = f"s3://{self.name}/{key}" if key else f"s3://{self.name}"
        text = str(error)
        code = _s3_code(text)
        where = self.credentials.endpoint or "AWS S3"
        if code == "NoSuchBucket":
            reason = f"bucket {self.name!r} does not exist at {where}"
        elif _denied(error) or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            reason = (f"access denied{f' ({code})' if code else ''} at {where}: check "
                      f"{pod.OBJECT_STORE_KEY_ID_ENV} and {pod.OBJECT_STORE_SECRET_KEY_ENV} (the Secret named by "
                      f"{SECRET_FIELD}) and that they may use this bucket")
        elif isinstance(error, FileNotFoundError) or code == "NoSuchKey":
            reason = "no such object"
        else:
            first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
            reason = f"cannot read from {where}: {first}"
        return TrainerError(self.field, _without(f"{url}: {reason}", self.credentials.secret))


class _RangeReader(io.RawIOBase):
    """An object as a seekable raw stream of READ_BUFFER ranges, the next one fetched in the
    background while the caller parses this one: reading overlaps the network instead of
    waiting on it. Memory: two ranges at most."""

    def __init__(self, bucket: "Bucket", info: ObjectInfo, chunk: int = READ_BUFFER):
        self._bucket, self._info, self._chunk_size = bucket, info, chunk
        self._position = 0
        self._chunk, self._chunk_start = memoryview(b""), 0
        self._ahead: tuple[int, Future] | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="s3-read-ahead")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._info.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        if self._position >= self._info.size:
            return 0
        offset = self._position - self._chunk_start
        if not 0 <= offset < len(self._chunk):
            self._chunk, self._chunk_start = self._fetch(self._position), self._position
            offset = 0
        count = min(len(buffer), len(self._chunk) - offset)
        memoryview(buffer).cast("B")[:count] = self._chunk[offset:offset + count]
        self._position += count
        return count

    def _fetch(self, start: int) -> memoryview:
        """The range at `start` (the one read ahead when it is that one), and the next one asked for."""
        if self._ahead is not None and self._ahead[0] == start:
            data = self._ahead[1].result()
        else:
            if self._ahead is not None:
                self._ahead[1].cancel()
            data = self._get(start)
        following = start + len(data)
        self._ahead = (following, self._pool.submit(self._get, following)) if following < self._info.size else None
        return memoryview(data)

    def _get(self, start: int):
        import obstore

        try:
            return obstore.get_range(self._bucket.store, self._info.key, start=start,
                                     length=min(self._chunk_size, self._info.size - start))
        except Exception as error:
            raise self._bucket.error(error, self._info.key) from None

    def close(self) -> None:
        if not self.closed:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._chunk = memoryview(b"")
        super().close()


def _denied(error: Exception) -> bool:
    import obstore.exceptions as failures

    return isinstance(error, (failures.PermissionDeniedError, failures.UnauthenticatedError))


def _s3_code(text: str) -> str | None:
    match = re.search(r"<Code>(\w+)</Code>", text)
    return match.group(1) if match else None


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def dataset_files(source: Source, suffixes, env: Mapping[str, str] | None = None) -> list:
    """records.DatasetFile entries for an s3:// dataset: the object, or a folder's files with one
    of `suffixes` in key order. Nothing is read until a file is opened."""
    from trainwright.trainer.records import DatasetFile

    bucket = Bucket(source, env)
    objects = bucket.objects()
    if len(objects) > 1 or objects[0].key != bucket.key:
        objects = [o for o in objects if PurePosixPath(o.key).suffix in suffixes]
        if not objects:
            raise TrainerError(source.field, f"{source.text}: folder has no {', '.join(suffixes)} files")
    return [DatasetFile(f"s3://{bucket.name}/{o.key}", o.size, o.etag, lambda o=o: bucket.open(o)) for o in objects]


def open_source(source: Source, env: Mapping[str, str] | None = None) -> BinaryIO:
    """The one object `source` names, as a buffered binary stream."""
    bucket = Bucket(source, env)
    info = bucket.head(bucket.key) if bucket.key else None
    if info is None:
        bucket.objects()  # raises: missing bucket or missing object, told apart
        raise TrainerError(source.field, f"{source.text}: names a folder, not an object")
    return bucket.open(info)


def cache_dir() -> Path:
    """Where copies of s3:// model folders go: $TRAINWRIGHT_OBJECT_CACHE, else the temporary
    folder (a pod's /tmp is an emptyDir, so a restarted container keeps its copy)."""
    return Path(os.environ.get(pod.OBJECT_CACHE_ENV) or Path(tempfile.gettempdir()) / "trainwright-objects")


def local_copy(source: Source, cache_dir: str | Path, env: Mapping[str, str] | None = None) -> Path:
    """The object or folder `source` names, copied under `cache_dir` (skipped when the copy's
    ETags still match): for readers that need a local path, such as from_pretrained."""
    bucket = Bucket(source, env)
    objects = bucket.objects()
    target = Path(cache_dir) / bucket.name / bucket.key
    single = len(objects) == 1 and objects[0].key == bucket.key
    manifest = target.with_name(target.name + ".etag.json") if single else target / ".trainwright-objects.json"
    wanted = {o.key: o.etag for o in objects}
    try:
        if manifest.exists() and json.loads(manifest.read_text()) == wanted:
            return target
        manifest.unlink(missing_ok=True)  # a copy interrupted from here on is downloaded again
        for info in objects:
            destination = target if single else target / info.key[len(bucket.key):].lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            bucket.download(info, destination)
        manifest.write_text(json.dumps(wanted))
    except OSError as error:  # the local disk: full, read-only, or a file where a folder goes
        raise TrainerError(source.field, f"{source.text}: cannot copy to {cache_dir}: {error.strerror or error}") from None
    return target
