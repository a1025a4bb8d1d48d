#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager) from the Go
# module proxy, pinned by version and cached, because no prebuilt binaries can be fetched here.
#
# Both upstream modules carry `replace` directives, so neither can be `go install`ed: each is
# built from a small throw-away module (in the cache) that requires it, and for Kubernetes also
# replaces every k8s.io/* staging module with its published v0.X.Y twin.
#
# The node (tests/infra/node.py) also needs kubelet, kube-scheduler and kube-proxy from the same
# module, and a pause (sandbox) image binary compiled from the module's build/pause/linux/pause.c.
#
# Usage: tools/k8s/build.sh [node]  (prints the bin directories; a warm run takes ~1 s)
#        `node` also builds the node's binaries (cold: ~2-3 min more once the control plane's
#        build cache is warm) and prints NODE_BIN=.
# Env:   K8S_VERSION, ETCD_VERSION, ACME_GATEWAY_CACHE (default ~/.cache/acme-gateway)
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
CACHE="${ACME_GATEWAY_CACHE:-$HOME/.cache/acme-gateway}"

K8S_DIR="$CACHE/k8s-$K8S_VERSION"
NODE_DIR="$CACHE/k8s-node-$K8S_VERSION"
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

# write_k8s_module DIR CMD...: a throw-away module requiring k8s.io/kubernetes with every
# staging module replaced by its published twin, and `tool` lines for cmd/CMD...
write_k8s_module() {
  local mod="$1"; shift
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
    printf 'tool (\n'
    local c
    for c in "$@"; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$c"; done
    printf ')\n\nreplace (\n'
    local m
    for m in "${modules[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
    printf ')\n'
  } >"$mod/go.mod"
  log "resolving k8s.io/kubernetes $K8S_VERSION with ${#modules[@]} staging modules at $staging"
  (cd "$mod" && go mod tidy)
}

# k8s_ldflags: the version variables upstream's build sets.
k8s_ldflags() {
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
  echo "$ldflags"
}

build_k8s() {
  local key="k8s=$K8S_VERSION go=$(go env GOVERSION)"
  if stamp_ok "$K8S_DIR" "$key" \
      && [[ -x "$K8S_DIR/bin/kube-apiserver" && -x "$K8S_DIR/bin/kube-controller-manager" ]]; then
    return
  fi
  local mod="$K8S_DIR/module"
  rm -rf "$mod" && mkdir -p "$mod" "$K8S_DIR/bin"
  write_k8s_module "$mod" kube-apiserver kube-controller-manager

  local ldflags cmd
  ldflags="$(k8s_ldflags)"
  # Two cores: build one binary at a time.
  for cmd in kube-apiserver kube-controller-manager; do
    log "building $cmd $K8S_VERSION (cold build takes many minutes on 2 cores)"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" \
        -o "$K8S_DIR/bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv -f "$K8S_DIR/bin/$cmd.tmp" "$K8S_DIR/bin/$cmd"
  done
  echo "$key" >"$K8S_DIR/.built"
}

build_node() {
  local key="k8s=$K8S_VERSION go=$(go env GOVERSION) cc=$(gcc -dumpfullversion 2>/dev/null)"
  local -a cmds=(kubelet kube-scheduler kube-proxy)
  local cmd ok=1
  for cmd in "${cmds[@]}" pause; do [[ -x "$NODE_DIR/bin/$cmd" ]] || ok=0; done
  if ((ok)) && stamp_ok "$NODE_DIR" "$key"; then return; fi
  command -v gcc >/dev/null || { log "gcc is needed for the pause binary"; exit 1; }
  rm -f "$NODE_DIR/.built"
  local mod="$NODE_DIR/module"
  rm -rf "$mod" && mkdir -p "$mod" "$NODE_DIR/bin"
  write_k8s_module "$mod" "${cmds[@]}"
  local ldflags
  ldflags="$(k8s_ldflags)"
  for cmd in "${cmds[@]}"; do
    log "building $cmd $K8S_VERSION"
    (cd "$mod" && flock "$CACHE/go-build.lock" go build -trimpath -ldflags "$ldflags" \
        -o "$NODE_DIR/bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv -f "$NODE_DIR/bin/$cmd.tmp" "$NODE_DIR/bin/$cmd"
  done
  # The sandbox ("pause") container's process: no registry can be reached for its image.
  local src
  src="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
      | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')/build/pause/linux/pause.c"
  [[ -f "$src" ]] || { log "no pause.c at $src"; exit 1; }
  gcc -Os -static -Wall -DVERSION="$K8S_VERSION" -o "$NODE_DIR/bin/pause.tmp" "$src"
  strip "$NODE_DIR/bin/pause.tmp"
  mv -f "$NODE_DIR/bin/pause.tmp" "$NODE_DIR/bin/pause"
  echo "$key" >"$NODE_DIR/.built"
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
  if [[ "${1:-}" == node ]]; then build_node; fi
  log "done in $((SECONDS - start)) s"
  echo "ETCD_BIN=$ETCD_DIR/bin"
  echo "K8S_BIN=$K8S_DIR/bin"
  if [[ "${1:-}" == node ]]; then echo "NODE_BIN=$NODE_DIR/bin"; fi
}

main "$@"
