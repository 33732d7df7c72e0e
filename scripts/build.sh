#!/usr/bin/env bash
# Builds the plugin and the AISquare emulator into bin/. The plugin is
# stamped with the version that bootstrap/configure.sh registers, because
# Vault rejects a plugin whose running version differs from its registered
# version.
#
# Environment: AISQUARE_PLUGIN_VERSION (default: VERSION in the Makefile).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

version=$(plugin_version)
[[ -n "$version" ]] || die "the plugin version is empty; set VERSION in the Makefile or run make bin VERSION=v1.2.3"
# Vault accepts only semantic versions with a leading v for plugins.
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$ ]] ||
  die "invalid plugin version \"$version\": use a semantic version with a leading v, such as v0.1.0"

cd "$repo_root"
mkdir -p bin

log "building bin/$plugin_name $version"
go build -ldflags "-X github.com/aisquare/vault-plugin-secrets-aisquare.Version=$version" \
  -o "bin/$plugin_name" ./cmd/vault-plugin-secrets-aisquare

log "building bin/aisquare-emulator"
go build -o bin/aisquare-emulator ./cmd/aisquare-emulator
