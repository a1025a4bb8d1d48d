#!/usr/bin/env bash
# Build the Go test clients (cert-manager controller, lego, helm) from the Go module proxy,
# pinned by version and cached, because no prebuilt binaries can be fetched here.
#
#   certmanager  tools/certmanager (our small main over github.com/cert-manager/cert-manager,
#                version pinned in tools/certmanager/go.mod) + its CRDs from deploy/crds
#   lego         github.com/go-acme/lego/v5 (main package is the module root, not cmd/lego),
#                built through a throw-away module because of LEGO_REPLACE
#   helm         helm.sh/helm/v3/cmd/helm with the version ldflags upstream's Makefile sets
#   stepca       github.com/smallstep/certificates/cmd/step-ca, a peer for bench/ (not in `all`)
#   loadgen      bench/loadgen, the ACME load generator of bench/ (not in `all`)
#
# Usage: tools/go-tools/build.sh [certmanager|lego|helm|stepca|loadgen|all]...   (default: all)
# Prints NAME=path lines on stdout (logs go to stderr). A warm run takes well under a second.
# Env:   LEGO_VERSION, HELM_VERSION, ACME_GATEWAY_CACHE (default ~/.cache/acme-gateway)
set -euo pipefail

LEGO_VERSION="${LEGO_VERSION:-v5.6.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
STEPCA_VERSION="${STEPCA_VERSION:-v0.30.2}"
CACHE="${ACME_GATEWAY_CACHE:-$HOME/.cache/acme-gateway}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CM_SRC="$(cd "$HERE/../certmanager" && pwd)"
LOADGEN_SRC="$(cd "$HERE/../../bench/loadgen" && pwd)"

# lego's Makefile dead-code-elimination tags, plus its "dnslight" build with only the RFC 2136
# provider (`--dns rfc2136` / `dnsupdate`): the tests need no other DNS provider, and the full
# provider set multiplies the cold build time.
LEGO_TAGS="urfave_cli_no_template,grpcnotrace,validator_novalidatefn,ozzo_validation_no_template"
LEGO_TAGS+=",lego_dnslight,lego_dns_dnsupdate"
# lego v5.6.0 requires gitlab.com/greyxor/slogor v1.7.1 (its CLI log handler), which the Go
# module proxy refuses (403); v1.7.0 is served and has the same API (lego v5.4-v5.5 use it).
LEGO_REPLACE="gitlab.com/greyxor/slogor => gitlab.com/greyxor/slogor v1.7.0"

# Module and build caches are shared with tools/k8s/build.sh.
export GOMODCACHE="$CACHE/go/mod"
export GOCACHE="$CACHE/go/build"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-buildvcs=false"
export CGO_ENABLED=0

log() { printf '[go-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# stamp_ok DIR KEY: true when DIR was completely built for KEY (the stamp is written last).
stamp_ok() { [[ -f "$1/.built" && "$(cat "$1/.built")" == "$2" ]]; }

# mod_field MODULE@VERSION FIELD: a field (Dir, GoMod) of `go mod download -json`.
mod_field() {
  go mod download -json "$1" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}\$/\1/p"
}

certmanager_version() {
  awk '$1 == "require" && $2 == "github.com/cert-manager/cert-manager" { print $3 }
       $1 == "github.com/cert-manager/cert-manager" { print $2 }' "$CM_SRC/go.mod" | head -n1
}

build_certmanager() {
  local version dir key
  version="$(certmanager_version)"
  [[ -n "$version" ]] || die "no cert-manager version in $CM_SRC/go.mod"
  dir="$CACHE/certmanager-$version"
  key="certmanager=$version go=$GOVERSION src=$(cat "$CM_SRC/main.go" "$CM_SRC/go.mod" "$CM_SRC/go.sum" | sha256sum | cut -c1-16)"
  if ! stamp_ok "$dir" "$key" || [[ ! -x "$dir/bin/certmanager-controller" ]]; then
    log "building cert-manager controller $version (cold build: many minutes on 2 cores)"
    local start=$SECONDS moddir
    rm -f "$dir/.built"
    mkdir -p "$dir/bin"
    (cd "$CM_SRC" && go build -trimpath \
        -ldflags "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$version" \
        -o "$dir/bin/certmanager-controller.tmp" .)
    mv -f "$dir/bin/certmanager-controller.tmp" "$dir/bin/certmanager-controller"
    moddir="$(mod_field "github.com/cert-manager/cert-manager@$version" Dir)"
    [[ -d "$moddir/deploy/crds" ]] || die "no deploy/crds in cert-manager module ($moddir)"
    rm -rf "$dir/crds" && mkdir -p "$dir/crds"
    cp "$moddir"/deploy/crds/*.yaml "$dir/crds/"
    chmod -R u+w "$dir/crds"
    echo "$key" >"$dir/.built"
    log "cert-manager controller built in $((SECONDS - start)) s"
  fi
  echo "CERTMANAGER_BIN=$dir/bin/certmanager-controller"
  echo "CERTMANAGER_CRDS=$dir/crds"
}

build_lego() {
  local dir="$CACHE/lego-$LEGO_VERSION"
  local key="lego=$LEGO_VERSION go=$GOVERSION tags=$LEGO_TAGS replace=$LEGO_REPLACE"
  if ! stamp_ok "$dir" "$key" || [[ ! -x "$dir/bin/lego" ]]; then
    log "building lego $LEGO_VERSION (tags $LEGO_TAGS)"
    local start=$SECONDS mod="$dir/module"
    rm -rf "$mod" "$dir/bin.tmp" "$dir/.built" && mkdir -p "$mod" "$dir/bin"
    # Not `go install lego@version`: that cannot apply LEGO_REPLACE, so lego is built from a
    # throw-away module (in the cache) that requires it.
    printf 'module acme-gateway.local/lego-build\n\ngo 1.26.0\n\nrequire github.com/go-acme/lego/v5 %s\n\nreplace %s\n' \
        "$LEGO_VERSION" "$LEGO_REPLACE" >"$mod/go.mod"
    # -mod=mod resolves only the packages these build tags import: the full provider set
    # needs modules the proxy does not serve.
    (cd "$mod" && go build -mod=mod -trimpath -tags "$LEGO_TAGS" \
        -ldflags "-s -w -X main.version=$LEGO_VERSION" -o "$dir/bin/lego.tmp" github.com/go-acme/lego/v5)
    mv -f "$dir/bin/lego.tmp" "$dir/bin/lego"
    echo "$key" >"$dir/.built"
    log "lego built in $((SECONDS - start)) s"
  fi
  echo "LEGO_BIN=$dir/bin/lego"
}

build_helm() {
  local dir="$CACHE/helm-$HELM_VERSION"
  local key="helm=$HELM_VERSION go=$GOVERSION"
  if ! stamp_ok "$dir" "$key" || [[ ! -x "$dir/bin/helm" ]]; then
    log "building helm $HELM_VERSION"
    local start=$SECONDS gomod client_go major minor
    # Like upstream's Makefile: the default Capabilities.KubeVersion follows client-go v0.X.
    gomod="$(mod_field "helm.sh/helm/v3@$HELM_VERSION" GoMod)"
    client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod" | head -n1)"
    [[ "$client_go" =~ ^v0\.([0-9]+)\. ]] || die "cannot read k8s.io/client-go version from $gomod"
    major=1 minor="${BASH_REMATCH[1]}"
    local v="helm.sh/helm/v3/internal/version" ldflags="-s -w"
    ldflags+=" -X $v.version=$HELM_VERSION -X $v.metadata= -X $v.gitTreeState=clean"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
    rm -rf "$dir/bin.tmp" "$dir/.built" && mkdir -p "$dir/bin.tmp" "$dir/bin"
    GOBIN="$dir/bin.tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv -f "$dir/bin.tmp/helm" "$dir/bin/helm" && rmdir "$dir/bin.tmp"
    echo "$key" >"$dir/.built"
    log "helm built in $((SECONDS - start)) s"
  fi
  echo "HELM_BIN=$dir/bin/helm"
}

# gobuild ARGS...: `go build`/`go install` under the machine-wide Go build lock, so builds
# started by other checkouts or scripts do not run at the same time on the 2 cores.
gobuild() { flock "$CACHE/go-build.lock" go "$@"; }

# step-ca with CGO off: the YubiKey (pcsc) and PKCS#11 KMS are then left out by their build
# constraints (`cgo && !noyubikey`), so libpcsclite is not needed; the bench uses neither.
build_stepca() {
  local dir="$CACHE/stepca-$STEPCA_VERSION"
  local key="stepca=$STEPCA_VERSION go=$GOVERSION cgo=0"
  if ! stamp_ok "$dir" "$key" || [[ ! -x "$dir/bin/step-ca" ]]; then
    log "building step-ca $STEPCA_VERSION (cold build: several minutes on 2 cores)"
    local start=$SECONDS
    rm -rf "$dir/bin.tmp" "$dir/.built" && mkdir -p "$dir/bin.tmp" "$dir/bin"
    GOBIN="$dir/bin.tmp" gobuild install -trimpath \
        -ldflags "-s -w -X main.Version=$STEPCA_VERSION" \
        "github.com/smallstep/certificates/cmd/step-ca@$STEPCA_VERSION"
    mv -f "$dir/bin.tmp/step-ca" "$dir/bin/step-ca" && rmdir "$dir/bin.tmp"
    echo "$key" >"$dir/.built"
    log "step-ca built in $((SECONDS - start)) s"
  fi
  echo "STEPCA_BIN=$dir/bin/step-ca"
}

build_loadgen() {
  local sum dir key
  sum="$(cat "$LOADGEN_SRC"/*.go "$LOADGEN_SRC/go.mod" | sha256sum | cut -c1-16)"
  dir="$CACHE/loadgen-$sum"
  key="loadgen=$sum go=$GOVERSION"
  if ! stamp_ok "$dir" "$key" || [[ ! -x "$dir/bin/loadgen" ]]; then
    log "building bench/loadgen ($sum)"
    local start=$SECONDS
    rm -f "$dir/.built" && mkdir -p "$dir/bin"
    (cd "$LOADGEN_SRC" && gobuild build -trimpath -ldflags "-s -w" -o "$dir/bin/loadgen.tmp" .)
    mv -f "$dir/bin/loadgen.tmp" "$dir/bin/loadgen"
    echo "$key" >"$dir/.built"
    log "loadgen built in $((SECONDS - start)) s"
  fi
  echo "LOADGEN_BIN=$dir/bin/loadgen"
}

main() {
  command -v go >/dev/null || die "go is not installed"
  local -a targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(all)
  local t
  for t in "${targets[@]}"; do
    case "$t" in
      certmanager | lego | helm | stepca | loadgen | all) ;;
      *) die "unknown target '$t' (want certmanager, lego, helm, stepca, loadgen or all)" ;;
    esac
  done
  mkdir -p "$CACHE"
  GOVERSION="$(go env GOVERSION)"
  # One build at a time, even when several pytest workers start it together.
  exec 9>"$CACHE/.go-tools-build.lock"
  flock 9
  for t in "${targets[@]}"; do
    case "$t" in
      all) build_certmanager; build_lego; build_helm ;;
      *) "build_$t" ;;
    esac
  done
}

main "$@"
