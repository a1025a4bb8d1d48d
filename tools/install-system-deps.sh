#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real: BIND9 (named, nsupdate, dig,
# tsig-keygen) and PostgreSQL 15 server binaries. Idempotent: when every package is already
# installed it exits at once without touching apt. Run as root on Debian bookworm.
set -euo pipefail

PACKAGES=(
    bind9          # named: the authoritative DNS server for dns-01 and http-01 name lookups
    bind9-utils    # tsig-keygen, named-checkconf
    bind9-dnsutils # nsupdate, dig (certbot's manual hooks use nsupdate)
    postgresql-15  # initdb/postgres under /usr/lib/postgresql/15/bin
    postgresql-client-15
    util-linux     # runuser, to start postgres as an unprivileged user
    passwd         # useradd, when the postgres user must be created
    ca-certificates
    openssl        # relying-party checks (tests/revocation): openssl ocsp, verify -crl_check
    curl           # docs/revocation.md fetches the CRL with curl (run by a test)
    pebble         # bench/ and its smoke test: Pebble 2.4 as a peer, pebble-challtestsrv as DNS
    haproxy        # tests/chaos: the load balancer in front of three server replicas
    # (step-ca is built with CGO off, which leaves out its pcsc/PKCS#11 KMS: no libpcsclite-dev)
    # The real node (tests/infra/node.py) and its images (tools/image/build.sh):
    containerd                  # the node's container runtime (CRI), with a config of its own
    runc                        # the OCI runtime containerd starts
    containernetworking-plugins # bridge/host-local/loopback/portmap CNI plugins in /usr/lib/cni
    iptables                    # kube-proxy and the bridge plugin program NAT rules
    iproute2                    # ip: the harness removes the node's bridge on teardown
    mmdebstrap                  # the image's base root filesystem, made locally
    buildah                     # builds our Dockerfile without a daemon (chroot isolation)
    skopeo                      # OCI layout -> docker-archive for `ctr images import`
    umoci                       # packs single-binary images (pause, cert-manager)
    busybox-static              # a shell for the helm test hook's image
    prometheus                  # tests/observe: a real Prometheus scrapes server and operator; promtool checks/tests the alert rules
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "install-system-deps: all present (${PACKAGES[*]})"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install-system-deps: missing ${missing[*]} and not root; run as root" >&2
    exit 1
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# The tests start their own named and postgres on free ports: keep the packages' system
# services from starting (on port 53/5432) during the install, unless a policy already exists.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if ((created_policy)); then rm -f "$policy"; fi
}
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"

for bin in /usr/sbin/named /usr/bin/nsupdate /usr/bin/dig /usr/sbin/tsig-keygen \
    /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/postgres; do
    if [[ ! -x "$bin" ]]; then
        echo "install-system-deps: $bin missing after install" >&2
        exit 1
    fi
done
echo "install-system-deps: done"
