#!/usr/bin/env bash
# Build the acme-gateway image from the project's own Dockerfile without a Docker daemon or a
# registry: the Python base image is made locally by mmdebstrap (Debian bookworm, python3.11),
# then `buildah bud --isolation chroot` runs the Dockerfile with PYTHON_IMAGE pointing at it
# (uv is installed from PyPI inside the build), and the result is written as a docker-archive
# that `ctr images import` (tests/infra/node.py) or `docker load` take.
#
# Cached under $CACHE/image: the base by its package list, the image by a hash of the
# Dockerfile, uv.lock, pyproject.toml, README.md and the sources that go into it.
#
# Usage: tools/image/build.sh     prints IMAGE=<ref> and ARCHIVE=<tar> (warm: ~1 s)
# Env:   ACME_GATEWAY_IMAGE_TAG (default: dev-<hash>), ACME_GATEWAY_CACHE
# Cost:  cold ~3-4 min (mmdebstrap ~1 min, uv sync from PyPI, packing), 430 MB of cache.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${ACME_GATEWAY_CACHE:-$HOME/.cache/acme-gateway}"
DIR="$CACHE/image"
SUITE=bookworm
BASE_PACKAGES="python3.11,python3.11-venv,python3-venv,ca-certificates"
REPO=localhost/acme-gateway/acme-gateway

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || die "$tool missing: run tools/install-system-deps.sh"
done
[[ $(id -u) -eq 0 ]] || die "run as root (buildah chroot isolation, mmdebstrap root mode)"

# buildah keeps its own storage next to the cache; overlay works on this VM's ext4.
BUILDAH=(buildah --root "$DIR/storage" --runroot /run/acme-gateway-buildah
         --storage-driver overlay)

base_image() {
  local key tag
  key="$(printf '%s %s v1' "$SUITE" "$BASE_PACKAGES" | sha256sum | cut -c1-12)"
  tag="localhost/acme-gateway/python-base:$SUITE-$key"
  if "${BUILDAH[@]}" inspect --type image "$tag" >/dev/null 2>&1; then
    echo "$tag"; return
  fi
  log "making the Python base image with mmdebstrap ($SUITE: $BASE_PACKAGES, ~1 min)"
  local root="$DIR/base-$key.rootfs"
  rm -rf "$root"
  # Same interpreter paths as the official python image, which the Dockerfile relies on.
  mmdebstrap --variant=minbase --include="$BASE_PACKAGES" \
      --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3.11"' \
      --customize-hook='ln -sf /usr/bin/python3.11 "$1/usr/local/bin/python3"' \
      --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
      "$SUITE" "$root" http://deb.debian.org/debian \
      "deb http://deb.debian.org/debian-security $SUITE-security main" >&2
  local ctr mnt
  ctr="$("${BUILDAH[@]}" from scratch)"
  mnt="$("${BUILDAH[@]}" mount "$ctr")"
  cp -a "$root/." "$mnt/"
  "${BUILDAH[@]}" umount "$ctr" >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --env LANG=C.UTF-8 --cmd python3 "$ctr"
  "${BUILDAH[@]}" commit -q --rm "$ctr" "$tag" >/dev/null
  rm -rf "$root"
  echo "$tag"
}

source_hash() {
  (cd "$ROOT" && {
    cat Dockerfile .dockerignore pyproject.toml uv.lock README.md
    find acme_server operator -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16)
}

main() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  local start=$SECONDS hash tag archive base
  hash="$(source_hash)"
  tag="${ACME_GATEWAY_IMAGE_TAG:-dev-$hash}"
  archive="$DIR/acme-gateway-$hash-$tag.tar"
  if [[ -s "$archive" ]]; then
    echo "IMAGE=$REPO:$tag"; echo "ARCHIVE=$archive"; return
  fi
  base="$(base_image)"
  log "building $REPO:$tag from $ROOT/Dockerfile on $base (buildah, chroot isolation)"
  # The machine's own trust (it may sit behind a TLS-inspecting proxy) for PyPI downloads
  # in the build; the image itself keeps its base's trust store.
  local -a trust=()
  local bundle="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
  if [[ -f "$bundle" ]]; then
    trust=(-v "$bundle:/etc/build-ca.pem:ro" --build-arg BUILD_CA_BUNDLE=/etc/build-ca.pem)
  fi
  (cd "$ROOT" && "${BUILDAH[@]}" bud --isolation chroot --layers --quiet "${trust[@]}" \
      --build-arg "PYTHON_IMAGE=$base" -t "$REPO:$tag" -f Dockerfile . >&2)
  rm -f "$archive.tmp"
  "${BUILDAH[@]}" push -q "$REPO:$tag" "docker-archive:$archive.tmp:$REPO:$tag" >&2
  mv -f "$archive.tmp" "$archive"
  # Keep the cache small: older archives and images of this repository go; the base and
  # the layers still used stay for reuse.
  find "$DIR" -maxdepth 1 -name 'acme-gateway-*.tar' ! -path "$archive" -delete
  local old
  for old in $("${BUILDAH[@]}" images --format '{{.Name}}:{{.Tag}}' | grep "^$REPO:" || true); do
    [[ "$old" == "$REPO:$tag" ]] || "${BUILDAH[@]}" rmi "$old" >/dev/null 2>&1 || true
  done
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  log "built in $((SECONDS - start)) s"
  echo "IMAGE=$REPO:$tag"
  echo "ARCHIVE=$archive"
}

main "$@"
