"""Container images for the test node, made without a registry or a Docker daemon.

- The app image: tools/image/build.sh (our Dockerfile through `buildah bud`), imported as is.
- Single-binary images (the pause binary, cert-manager's controller): the binary put into an
  empty OCI image with umoci, converted by skopeo to a docker-archive for `ctr images import`.

Archives are cached under $CACHE/image, keyed on the content that goes into them.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tests.infra.kube import REPO

if TYPE_CHECKING:
    from tests.infra.node import Node

IMAGE_BUILD = REPO / "tools" / "image" / "build.sh"


class ImageError(RuntimeError):
    """An image could not be built or imported; the message says which step and why."""


def _cache_dir() -> Path:
    from tests.infra.node import CACHE

    path = CACHE / "image"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(argv: Sequence[str], timeout: float = 600) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise ImageError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def build_app_image(tag: str | None = None, timeout: float = 1800) -> tuple[str, Path]:
    """The project's image from its Dockerfile: (reference, docker-archive path)."""
    env_tag = ["env", f"ACME_GATEWAY_IMAGE_TAG={tag}"] if tag else []
    out = _run([*env_tag, "bash", str(IMAGE_BUILD)], timeout=timeout)
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return values["IMAGE"], Path(values["ARCHIVE"])


def binary_image(
    ref: str,
    files: Mapping[Path, str],
    entrypoint: Sequence[str],
    *,
    user: str = "65532:65532",
    env: Sequence[str] = (),
) -> Path:
    """A docker-archive holding only `files` (host path -> path in the image) and empty /tmp,
    /etc/ssl/certs; cached on the files' content and the config."""
    digest = hashlib.sha256(f"{ref} {list(entrypoint)} {user} {list(env)}".encode())
    for src, dest in sorted(files.items(), key=lambda kv: kv[1]):
        digest.update(dest.encode())
        digest.update(Path(src).read_bytes())
    name = ref.rsplit("/", 1)[-1].replace(":", "-")
    archive = _cache_dir() / f"{name}-{digest.hexdigest()[:16]}.tar"
    if archive.exists():
        return archive
    tag = ref.rsplit(":", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="agw-image-") as tmp:
        layout, bundle = Path(tmp) / "layout", Path(tmp) / "bundle"
        _run(["umoci", "init", "--layout", str(layout)])
        _run(["umoci", "new", "--image", f"{layout}:{tag}"])
        _run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)])
        rootfs = bundle / "rootfs"
        for sub in ("tmp", "etc/ssl/certs"):
            (rootfs / sub).mkdir(parents=True, exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        for src, dest in files.items():
            target = rootfs / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        _run(["umoci", "repack", "--image", f"{layout}:{tag}", str(bundle)])
        config = ["umoci", "config", "--image", f"{layout}:{tag}", f"--config.user={user}"]
        config += [f"--config.entrypoint={part}" for part in entrypoint]
        config += [f"--config.env={e}" for e in env]
        _run(config)
        tmp_archive = archive.with_suffix(".tmp")
        tmp_archive.unlink(missing_ok=True)
        _run(["skopeo", "copy", "-q", f"oci:{layout}:{tag}", f"docker-archive:{tmp_archive}:{ref}"])
        tmp_archive.rename(archive)
    return archive


def ensure_image(node: Node, ref: str, archive: Path) -> None:
    """Import `archive` into the node's containerd unless `ref` is there already."""
    if not node.has_image(ref):
        node.import_image(archive)
    if not node.has_image(ref):
        raise ImageError(f"{archive} did not provide {ref} to the node")


def ensure_pause_image(node: Node, pause: Path) -> None:
    """The sandbox image containerd's CRI plugin is configured with (PAUSE_IMAGE)."""
    from tests.infra.node import PAUSE_IMAGE

    archive = binary_image(PAUSE_IMAGE, {pause: "/pause"}, ["/pause"], user="65535:65535")
    ensure_image(node, PAUSE_IMAGE, archive)


def ensure_app_image(node: Node, tag: str | None = None) -> str:
    """Build (cached) and import the app image; returns its reference. Earlier dev builds
    are removed from the node (its image store persists across sessions)."""
    ref, archive = build_app_image(tag)
    ensure_image(node, ref, archive)
    repo = ref.rsplit(":", 1)[0]
    stale = [
        name
        for name in node.ctr("images", "ls", "-q").stdout.split()
        if name.startswith(f"{repo}:") and name != ref
    ]
    if stale:
        node.ctr("images", "rm", *stale)
    return ref


def tag_image(node: Node, ref: str, new_ref: str) -> None:
    """A second name for an imported image (e.g. a new tag for an upgrade)."""
    if not node.has_image(new_ref):
        node.ctr("images", "tag", ref, new_ref)
