#!/usr/bin/env bash
# Copy the CRDs from crds/ (their one source of truth) into the chart's crds/ directory.
# Copies rather than symlinks: `helm package`, OCI pushes and Windows checkouts all handle
# plain files, and tests/helm/test_chart.py fails when the two drift apart.
#   helm/sync-crds.sh          copy
#   helm/sync-crds.sh --check  exit 1 (listing the files) when the copies differ
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/crds"
dst="$root/helm/acme-gateway/crds"
if [[ "${1:-}" == "--check" ]]; then
  diff -r "$src" "$dst" && echo "chart CRDs match crds/" && exit 0
  echo "chart CRDs differ from crds/: run helm/sync-crds.sh" >&2
  exit 1
fi
mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "$src"/*.yaml "$dst"/
echo "copied $(ls "$src"/*.yaml | wc -l) CRDs into $dst"
