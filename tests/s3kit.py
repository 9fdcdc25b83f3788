"""A real S3-compatible server for tests: s3proxy (hack/install-s3-server.sh) on a free loopback
port, its filesystem blob store in a temporary folder, and a fresh access key and secret.

It signs and checks requests as S3 does, so a wrong secret, a missing bucket and a missing
object answer with S3's own errors. Buckets and objects are made through the S3 API itself.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALL = HERE.parent / "hack" / "install-s3-server.sh"
TEMURIN_25 = Path("/usr/lib/jvm/temurin-25-jdk-amd64/bin/java")


class ServerMissing(Exception):
    pass


def find_jar() -> Path:
    jar = Path(subprocess.run([str(INSTALL), "--print-path"], check=True, capture_output=True, text=True).stdout.strip())
    if not jar.is_file():
        raise ServerMissing(f"{jar} not found (run hack/install-s3-server.sh or make s3-server)")
    return jar


def find_java() -> str:
    java = shutil.which("java") or (str(TEMURIN_25) if TEMURIN_25.exists() else None)
    if java is None:
        raise ServerMissing("java not found (s3proxy needs Java 17 or newer)")
    return java


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """One s3proxy process; `start()` waits until it answers, `stop()` ends it.

    By default it listens on the host's loopback. For the real node's pods, ``prefix`` runs it
    inside the node's network namespace and ``listen`` is 0.0.0.0 there (pods reach it on the
    node's address); the host still reaches ``endpoint`` when the caller forwards the port."""

    def __init__(self, jar: Path, java: str, *, listen: str = "127.0.0.1", prefix: tuple[str, ...] = ()):
        self.jar, self.java, self.listen, self.prefix = jar, java, listen, prefix
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.access_key = "AKID" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.work = Path(tempfile.mkdtemp(prefix="trainwright-s3-"))
        self.blobs = self.work / "blobs"
        self.log = self.work / "s3proxy.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "S3Server":
        self.blobs.mkdir()
        properties = self.work / "s3proxy.properties"
        properties.write_text("\n".join([
            f"s3proxy.endpoint=http://{self.listen}:{self.port}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={self.access_key}",
            f"s3proxy.credential={self.secret_key}",
            "jclouds.provider=filesystem",
            f"jclouds.filesystem.basedir={self.blobs}",
        ]) + "\n")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([*self.prefix, self.java, "-Xmx256m", "-jar", str(self.jar), "--properties", str(properties)],
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"s3proxy exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except urllib.error.HTTPError:  # an answer (403: unsigned): it is up
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"s3proxy did not answer on {self.endpoint} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.work, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def env(self, secret_key: str | None = None) -> dict[str, str]:
        """The variables the operator gives a trainer pod (the Secret's two keys, endpoint, region)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": secret_key or self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}

    def create_bucket(self, name: str) -> str:
        """PUT /NAME through the S3 API (signed with AWS signature v2: a few lines, no client)."""
        date = email.utils.formatdate(usegmt=True)
        signature = base64.b64encode(hmac.new(self.secret_key.encode(), f"PUT\n\n\n{date}\n/{name}".encode(),
                                              hashlib.sha1).digest()).decode()
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT", headers={
            "Date": date, "Authorization": f"AWS {self.access_key}:{signature}"})
        urllib.request.urlopen(request, timeout=10).close()
        return name

    def put(self, bucket: str, key: str, data: bytes | Path) -> str:
        """Upload through the S3 API; returns the object's s3:// URL."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(bucket, config={"endpoint": self.endpoint, "access_key_id": self.access_key,
                                        "secret_access_key": self.secret_key, "region": "us-east-1",
                                        "virtual_hosted_style_request": False},
                        client_options={"allow_http": True})
        obstore.put(store, key, Path(data) if isinstance(data, Path) else data)
        return f"s3://{bucket}/{key}"

    def put_folder(self, bucket: str, prefix: str, folder: Path) -> str:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            self.put(bucket, f"{prefix}/{path.relative_to(folder).as_posix()}", path)
        return f"s3://{bucket}/{prefix}"


def server(**options) -> S3Server:
    """A server not started yet (options: S3Server's); ServerMissing when the jar or Java is not there."""
    return S3Server(find_jar(), find_java(), **options)


def skip_or_fail(exc: ServerMissing) -> None:
    """Under CI a missing server fails the tests that need it; elsewhere they are skipped."""
    import pytest

    message = f"needs the S3 server: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
