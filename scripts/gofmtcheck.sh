#!/usr/bin/env bash
# Fails and lists the Go files that gofmt would change.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l .)
if [[ -n "$unformatted" ]]; then
  printf 'gofmtcheck: these files are not gofmt-formatted; run make fmt:\n%s\n' "$unformatted" >&2
  exit 1
fi
echo "gofmtcheck: all Go files are gofmt-formatted"
