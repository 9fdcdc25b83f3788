"""The real node's images, built here with buildah (no registry, no Docker engine).

* ``python-base``: Debian bookworm (``mmdebstrap --variant=minbase``) with Python 3.11, venv,
  pip and CA certificates; the Dockerfile's ``PYTHON_IMAGE``.
* ``pause``: the sandbox image, ``hack/node/pause`` built by ``hack/build-node.sh``.
* ``ray-operator``: KubeRay's operator binary (``hack/build-control-plane.sh``) on scratch.
* ``operator`` and ``trainer``: this tree's Dockerfile targets.

Each image is tagged ``localhost/trainwright/NAME:KEY``, where KEY hashes its inputs (the
Dockerfile, pyproject.toml and the sources the images copy; a binary; a package list), so an
image is rebuilt only when its inputs change. buildah keeps its layers (the trainer's
dependency layer, several GB, is reused while pyproject.toml stays the same); containerd
gets each image streamed from buildah (``buildah push ... docker-archive:/dev/stdout | ctr
import -``) with no archive on disk, and keeps only the unpacked layers.

    python -m devcluster images            # build what is missing, print refs, sizes, times
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "localhost/trainwright"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates", "passwd")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# What the Dockerfile copies (.dockerignore lets only these through).
DOCKERFILE_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "operator", "trainer")
NAMES = ("python-base", "pause", "ray-operator", "operator", "trainer")


class ImageBuildError(RuntimeError):
    """An image could not be built or imported; the message has the tool's output."""


@dataclass(frozen=True)
class Image:
    name: str
    key: str

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.key}"


def _hash_files(paths: Iterable[Path], extra: Iterable[str] = ()) -> str:
    digest = hashlib.sha256()
    for text in extra:
        digest.update(text.encode() + b"\0")
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc" or f.name.endswith(".egg-info"):
                continue
            digest.update(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f).encode() + b"\0")
            digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def _run(args: list[str], *, what: str, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise ImageBuildError(f"{what}: `{' '.join(args)}` exited {proc.returncode}:\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}")
    return proc


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise ImageBuildError(f"`{tool}` is not installed: run hack/install-node-packages.sh")
    return found


def buildah_has(ref: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", ref], capture_output=True).returncode == 0


def image_size(ref: str) -> str:
    """As buildah prints it, e.g. "401 MB"."""
    return _run(["buildah", "images", "--format", "{{.Size}}", ref], what=f"size of {ref}").stdout.split("\n")[0].strip()


class ImageSet:
    """The keys of every image, and their builds; ``node_bin``/``cp_bin`` hold the binaries."""

    def __init__(self, node_bin: Path, cp_bin: Path):
        self.node_bin, self.cp_bin = Path(node_bin), Path(cp_bin)
        self._images: dict[str, Image] = {}
        self.timings: dict[str, str] = {}

    def __getitem__(self, name: str) -> Image:
        """The image and its key (hashing its inputs the first time)."""
        if name not in self._images:
            self._images[name] = Image(name, self._key(name))
        return self._images[name]

    def _key(self, name: str) -> str:
        if name == "python-base":
            return _hash_files([], [SUITE, *BASE_PACKAGES])
        if name in ("operator", "trainer"):
            return _hash_files([ROOT / p for p in DOCKERFILE_INPUTS], [self["python-base"].ref])
        binary = {"pause": self.node_bin / "pause", "ray-operator": self.cp_bin / "ray-operator"}[name]
        if not binary.is_file():
            raise ImageBuildError(f"{binary} is missing: build it with "
                                  f"{'hack/build-node.sh' if name == 'pause' else 'hack/build-control-plane.sh'}")
        return _hash_files([binary])

    def build(self, names: Iterable[str] = NAMES, log: Callable[[str], None] = print) -> dict[str, Image]:
        """Build what buildah lacks (python-base first: the Dockerfile builds on it)."""
        _need("buildah")
        builders = {"python-base": self._build_base, "pause": self._build_pause,
                    "ray-operator": self._build_ray_operator,
                    "operator": lambda img: self._build_target(img, "operator"),
                    "trainer": lambda img: self._build_target(img, "trainer")}
        wanted = list(names)
        if {"operator", "trainer"} & set(wanted) and "python-base" not in wanted:
            wanted.insert(0, "python-base")
        for name in NAMES:
            if name not in wanted:
                continue
            image = self[name]
            if buildah_has(image.ref):
                self.timings[name] = "cached"
                continue
            log(f"==> building image {image.ref}")
            t0 = time.monotonic()
            builders[name](image)
            self.timings[name] = f"built in {time.monotonic() - t0:.0f}s"
            log(f"==> {image.ref}: {self.timings[name]}, {image_size(image.ref)}")
        return {n: self[n] for n in wanted}

    # -- builders ------------------------------------------------------------------------

    def _from_scratch(self, image: Image, setup: Callable[[str], None], config: list[str]) -> None:
        container = _run(["buildah", "from", "scratch"], what="buildah from scratch").stdout.strip()
        try:
            setup(container)
            _run(["buildah", "config", *config, container], what=f"buildah config {image.name}")
            _run(["buildah", "commit", "--rm", container, image.ref], what=f"buildah commit {image.name}")
        except BaseException:
            subprocess.run(["buildah", "rm", container], capture_output=True)
            raise

    def _build_base(self, image: Image) -> None:
        _need("mmdebstrap")

        def bootstrap(container: str) -> None:
            mount = _run(["buildah", "mount", container], what="buildah mount").stdout.strip()
            _run(["mmdebstrap", "--variant=minbase", "--quiet", f"--include={','.join(BASE_PACKAGES)}",
                  "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
                  "--dpkgopt=path-exclude=/usr/share/locale/*", SUITE, mount],
                 what="mmdebstrap the Python base")
            _run(["buildah", "umount", container], what="buildah umount")

        self._from_scratch(image, bootstrap, ["--env", "LANG=C.UTF-8", "--cmd", "python3"])

    def _build_pause(self, image: Image) -> None:
        binary = self.node_bin / "pause"
        self._from_scratch(image, lambda c: _run(["buildah", "copy", c, str(binary), "/pause"], what="copy pause"),
                           ["--entrypoint", '["/pause"]', "--user", "65535:65535"])

    def _build_ray_operator(self, image: Image) -> None:
        binary = self.cp_bin / "ray-operator"
        self._from_scratch(image, lambda c: _run(["buildah", "copy", c, str(binary), "/ray-operator"], what="copy ray-operator"),
                           ["--entrypoint", '["/ray-operator"]', "--user", "65532:65532"])

    def _build_target(self, image: Image, target: str) -> None:
        args = ["buildah", "bud", "--layers", "--isolation", "chroot", "--network", "host",
                "--build-arg", f"PYTHON_IMAGE={self['python-base'].ref}",
                "--target", target, "-t", image.ref, "-f", "Dockerfile"]
        if HOST_CA_BUNDLE.exists():  # pip's traffic may pass a TLS proxy only the host trusts
            args += ["-v", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"]
        pip_cache = Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip"))
        pip_cache.mkdir(parents=True, exist_ok=True)  # the host's wheels: torch is downloaded once
        args += ["-v", f"{pip_cache}:/root/.cache/pip", "--build-arg", "PIP_NO_CACHE_DIR="]
        proc = subprocess.run([*args, "."], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageBuildError(f"buildah bud --target {target} exited {proc.returncode}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")


# --------------------------------------------------------------------------- containerd


def containerd_refs(ctr: list[str]) -> set[str]:
    out = _run([*ctr, "images", "ls", "-q"], what="ctr images ls").stdout
    return set(out.split())


def import_into_containerd(ctr: list[str], images: Iterable[Image], log: Callable[[str], None] = print) -> dict[str, float]:
    """Stream each image containerd lacks from buildah into it; returns seconds per import."""
    have = containerd_refs(ctr)
    seconds = {}
    for image in images:
        if image.ref in have:
            continue
        t0 = time.monotonic()
        with tempfile.TemporaryFile() as err:
            push = subprocess.Popen(["buildah", "push", "--quiet", image.ref, f"docker-archive:/dev/stdout:{image.ref}"],
                                    stdout=subprocess.PIPE, stderr=err)
            imp = subprocess.run([*ctr, "images", "import", "--local", "--discard-unpacked-layers", "-"],
                                 stdin=push.stdout, capture_output=True, text=True)
            push.stdout.close()
            push_rc = push.wait()
            if push_rc != 0 or imp.returncode != 0:
                err.seek(0)
                raise ImageBuildError(f"import of {image.ref} into containerd failed: buildah push exited {push_rc} "
                                      f"({err.read().decode(errors='replace')[-2000:]}); ctr exited {imp.returncode} "
                                      f"({imp.stderr[-2000:]})")
        seconds[image.name] = time.monotonic() - t0
        log(f"==> imported {image.ref} into containerd in {seconds[image.name]:.0f}s")
    return seconds


def prune_containerd(ctr: list[str], current: Iterable[Image]) -> list[str]:
    """Remove older keys of the same images from containerd (their big layers are shared)."""
    keep = {image.ref for image in current}
    names = {image.ref.rsplit(":", 1)[0] for image in current}
    stale = [ref for ref in containerd_refs(ctr) if ref.rsplit(":", 1)[0] in names and ref not in keep]
    if stale:
        _run([*ctr, "images", "rm", *stale], what="ctr images rm")
    return stale


def main(argv: list[str]) -> int:
    from devcluster.node import node_bin_dir
    from devcluster.controlplane import default_bin_dir

    names = argv or list(NAMES)
    unknown = set(names) - set(NAMES)
    if unknown:
        print(f"unknown image(s) {sorted(unknown)}; known: {', '.join(NAMES)}", file=sys.stderr)
        return 2
    try:
        images = ImageSet(node_bin_dir(), default_bin_dir())
        built = images.build(names)
    except (ImageBuildError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, image in built.items():
        print(f"{image.ref}  {image_size(image.ref)}  {images.timings.get(name, '')}")
    return 0
