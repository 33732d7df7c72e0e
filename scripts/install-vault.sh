#!/usr/bin/env bash
# Finds or builds the vault binary that make dev and the end-to-end tests run.
#
# A vault on PATH is used when it is 1.16 or newer. Otherwise Vault
# v1.21.4 is built from the Go module proxy into a cache folder that later
# runs reuse. The binary's absolute path is printed on stdout. Progress goes
# to stderr.
#
# Environment:
#   AISQUARE_CACHE_DIR  cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-aisquare)
#   VAULT_BIN           use this vault binary and skip the search and the build
set -euo pipefail

readonly vault_version=1.21.4
readonly min_major=1 min_minor=16
cache_dir=${AISQUARE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-aisquare}
build_dir=$cache_dir/vault-$vault_version
cached_bin=$build_dir/bin/vault

log() { printf 'install-vault: %s\n' "$*" >&2; }

# Prints the version of the vault binary $1 as MAJOR MINOR, or nothing.
vault_major_minor() {
  "$1" version 2>/dev/null | sed -n 's/^Vault v\([0-9]*\)\.\([0-9]*\)\..*/\1 \2/p' | head -n 1
}

# Succeeds when the vault binary $1 is 1.16 or newer.
is_recent_enough() {
  local major minor
  read -r major minor <<<"$(vault_major_minor "$1")" || return 1
  [[ -n "${major:-}" && -n "${minor:-}" ]] || return 1
  ((major > min_major || (major == min_major && minor >= min_minor)))
}

if [[ -n "${VAULT_BIN:-}" ]]; then
  if ! is_recent_enough "$VAULT_BIN"; then
    log "VAULT_BIN=$VAULT_BIN is not a vault binary of version $min_major.$min_minor or newer; unset it to build one"
    exit 1
  fi
  printf '%s\n' "$VAULT_BIN"
  exit 0
fi

if on_path=$(command -v vault 2>/dev/null) && is_recent_enough "$on_path"; then
  log "using $on_path ($("$on_path" version | head -n 1))"
  printf '%s\n' "$on_path"
  exit 0
fi

if [[ -x "$cached_bin" ]] && is_recent_enough "$cached_bin"; then
  log "using cached $cached_bin"
  printf '%s\n' "$cached_bin"
  exit 0
fi

command -v go >/dev/null || { log "go is not on PATH; install Go 1.26 or newer"; exit 1; }

log "building Vault v$vault_version into $build_dir"
log "the first build takes about 10 minutes and 4 GB of Go module cache on 2 cores; later runs reuse it"

# The published module of Vault v1.21.4 was cut against an unpublished SDK.
# Against the published sdk v0.21.0 three call sites fail to compile, so the
# build uses a writable copy of the module with those three lines changed.
work=$build_dir/work
rm -rf "$work"
mkdir -p "$work" "$build_dir/bin"

src_dir=$(cd "$work" && go mod download -json "github.com/hashicorp/vault@v$vault_version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$src_dir" ]] || { log "go mod download of github.com/hashicorp/vault@v$vault_version failed"; exit 1; }
cp -r "$src_dir" "$work/vault"
chmod -R u+w "$work/vault"

# Replaces the line matching $2 in file $1 with $3 and fails unless exactly
# one line changed, so a drifted source stops the build instead of
# compiling something else.
patch_line() {
  local file=$work/vault/$1 pattern=$2 replacement=$3 count
  count=$(grep -cF -- "$pattern" "$file" || true)
  if [[ "$count" != 1 ]]; then
    log "expected one line containing '$pattern' in $1, found $count"
    exit 1
  fi
  PATTERN=$pattern REPLACEMENT=$replacement perl -0pi -e 's/\Q$ENV{PATTERN}\E/$ENV{REPLACEMENT}/' "$file"
}

# sdk v0.21.0 declares ActivationFunc with a third string parameter.
patch_line vault/identity_store.go \
  'ActivationFunc: iStore.activateDeduplication,' \
  'ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },'
patch_line vault/logical_system_activation_flags.go \
  'b.idStoreBackend.ActivationFunc(ctx, nil)' \
  'b.idStoreBackend.ActivationFunc(ctx, nil, "")'
# In sdk v0.21.0 RestorePolicy returns only an error, so the restored key
# keeps the requested name.
patch_line builtin/logical/transit/path_restore.go \
  'restoredKeyName, err := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)' \
  'restoredKeyName, err := keyName, b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)'

cat >"$work/go.mod" <<EOF
module vaultbuild

go 1.25.3

require github.com/hashicorp/vault v$vault_version

replace github.com/hashicorp/vault => ./vault

replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
EOF

cat >"$work/main.go" <<'EOF'
// Command vault is the Vault CLI and server, built from the module proxy.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
EOF

# -mod=mod resolves only what the command package imports. go mod tidy
# would also chase the imports of Vault's tests.
start=$SECONDS
(cd "$work" && go build -mod=mod -trimpath -o "$cached_bin.tmp" .)
mv "$cached_bin.tmp" "$cached_bin"
rm -rf "$work"
log "built $cached_bin in $((SECONDS - start))s ($("$cached_bin" version | head -n 1))"
printf '%s\n' "$cached_bin"
