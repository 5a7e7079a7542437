#!/usr/bin/env bash
# Offline validation of k8s/ (every overlay rendered, schema-validated, invariants checked) and the Dockerfiles.
# Needs kubectl (with its built-in kustomize) and node + npm; the npm packages are pinned in package-lock.json.
set -euo pipefail
cd "$(dirname "$0")"
for tool in kubectl node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "k8s validation: '$tool' is not installed; it is required (kubectl >= 1.27 with kustomize, node >= 18)" >&2
    exit 2
  fi
done
npm ci --no-audit --no-fund --loglevel=error >/dev/null
node validate.mjs
