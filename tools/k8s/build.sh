#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager) from the Go
# module proxy, pinned by version and cached, because no prebuilt binaries can be fetched here.
#
# Both upstream modules carry `replace` directives, so neither can be `go install`ed: each is
# built from a small throw-away module (in the cache) that requires it, and for Kubernetes also
# replaces every k8s.io/* staging module with its published v0.X.Y twin.
#
# Usage: tools/k8s/build.sh        (prints the bin directories; a warm run takes ~1 s)
# Env:   K8S_VERSION, ETCD_VERSION, ACME_GATEWAY_CACHE (default ~/.cache/acme-gateway)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${ACME_GATEWAY_CACHE:-$HOME/.cache/acme-gateway}"

K8S_DIR="$CACHE/k8s-$K8S_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"

# Module and build caches live with the binaries so a second build reuses them.
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-buildvcs=false -mod=mod"
export CGO_ENABLED=0

log() { printf '[k8s-build] %s\n' "$*" >&2; }

# stamp_ok DIR KEY: true when DIR was completely built for KEY (binaries are moved in last).
stamp_ok() { [[ -f "$1/.built" && "$(cat "$1/.built")" == "$2" ]]; }

build_etcd() {
  local key="etcd=$ETCD_VERSION go=$(go env GOVERSION)"
  if stamp_ok "$ETCD_DIR" "$key" && [[ -x "$ETCD_DIR/bin/etcd" ]]; then return; fi
  log "building etcd $ETCD_VERSION (cold build takes a few minutes)"
  local mod="$ETCD_DIR/module"
  rm -rf "$mod" && mkdir -p "$mod" "$ETCD_DIR/bin"
  cat >"$mod/go.mod" <<EOF
module acme-gateway.local/etcd-build

go 1.26.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION

tool go.etcd.io/etcd/server/v3
EOF
  (cd "$mod" && go mod tidy)
  local sha="${ETCD_VERSION}"
  (cd "$mod" && go build -trimpath \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$sha" \
      -o "$ETCD_DIR/bin/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv -f "$ETCD_DIR/bin/etcd.tmp" "$ETCD_DIR/bin/etcd"
  echo "$key" >"$ETCD_DIR/.built"
}

build_k8s() {
  local key="k8s=$K8S_VERSION go=$(go env GOVERSION)"
  if stamp_ok "$K8S_DIR" "$key" \
      && [[ -x "$K8S_DIR/bin/kube-apiserver" && -x "$K8S_DIR/bin/kube-controller-manager" ]]; then
    return
  fi
  local mod="$K8S_DIR/module"
  rm -rf "$mod" && mkdir -p "$mod" "$K8S_DIR/bin"

  # Staging modules are published as v0.<minor>.<patch> for release v1.<minor>.<patch>.
  local staging="v0.${K8S_VERSION#v1.}"
  local upstream_mod
  upstream_mod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
      | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$upstream_mod" ]] || { log "cannot read go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  local -a modules
  mapfile -t modules < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' \
      "$upstream_mod")
  [[ ${#modules[@]} -gt 10 ]] || { log "found no staging replaces in $upstream_mod"; exit 1; }

  {
    printf 'module acme-gateway.local/k8s-build\n\ngo 1.26.0\n\ngodebug default=go1.26\n\n'
    printf 'require k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
    printf 'tool (\n\tk8s.io/kubernetes/cmd/kube-apiserver\n'
    printf '\tk8s.io/kubernetes/cmd/kube-controller-manager\n)\n\nreplace (\n'
    local m
    for m in "${modules[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
    printf ')\n'
  } >"$mod/go.mod"
  log "resolving k8s.io/kubernetes $K8S_VERSION with ${#modules[@]} staging modules at $staging"
  (cd "$mod" && go mod tidy)

  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local -a vars=(
    "gitVersion=$K8S_VERSION" "gitMajor=1" "gitMinor=$minor"
    "gitCommit=" "gitTreeState=clean"
    "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  )
  local ldflags="-s -w" v
  for v in "${vars[@]}"; do
    ldflags+=" -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
  done
  local cmd
  # Two cores: build one binary at a time.
  for cmd in kube-apiserver kube-controller-manager; do
    log "building $cmd $K8S_VERSION (cold build takes many minutes on 2 cores)"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" \
        -o "$K8S_DIR/bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv -f "$K8S_DIR/bin/$cmd.tmp" "$K8S_DIR/bin/$cmd"
  done
  echo "$key" >"$K8S_DIR/.built"
}

main() {
  command -v go >/dev/null || { log "go is not installed"; exit 1; }
  mkdir -p "$CACHE"
  # One build at a time, even when pytest workers and a human start it together.
  exec 9>"$CACHE/.k8s-build.lock"
  flock 9
  local start=$SECONDS
  build_etcd
  build_k8s
  log "done in $((SECONDS - start)) s"
  echo "ETCD_BIN=$ETCD_DIR/bin"
  echo "K8S_BIN=$K8S_DIR/bin"
}

main "$@"
