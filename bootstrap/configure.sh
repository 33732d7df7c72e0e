#!/usr/bin/env bash
# Sets up the running dev Vault with the plugin. It installs
# bin/vault-plugin-secrets-aisquare into the plugin folder and registers it
# with its SHA-256 and version. It enables the plugin at aisquare/, or
# reloads it when it is enabled already. Then it points the config at the
# running emulator and writes a dynamic role, a static role and a policy
# for each team. Running it again after a rebuild loads the new binary. See
# scripts/lib.sh for the settings.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

plugin_bin=$repo_root/bin/$plugin_name
[[ -x "$plugin_bin" ]] || die "$plugin_bin not found; build it with scripts/build.sh"
[[ -s "$emulator_url_file" ]] || die "$emulator_url_file not found; start the emulator with bootstrap/start-emulator.sh"
emulator_url=$(cat "$emulator_url_file")

vault_bin=$(resolve_vault_bin)
version=$(plugin_version)
vault_cli status >/dev/null 2>&1 || die "no unsealed Vault responds at $vault_addr; start it with bootstrap/start-vault.sh"

# Installs the plugin binary and registers it, so that Vault runs exactly
# the binary whose SHA-256 it recorded.
register_plugin() {
  mkdir -p "$plugin_dir"
  install -m 0755 "$plugin_bin" "$plugin_dir/$plugin_name"
  local sha256
  sha256=$(sha256sum "$plugin_dir/$plugin_name" | cut -d ' ' -f 1)

  log "registering secret plugin $plugin_name $version (sha256 $sha256)"
  vault_cli plugin register -sha256="$sha256" -version="$version" secret "$plugin_name" >/dev/null
}

# Enables the plugin at aisquare/, or moves an existing mount to this
# version and restarts its plugin process.
enable_mount() {
  if vault_cli read "sys/mounts/$mount_path" >/dev/null 2>&1; then
    log "$mount_path/ is enabled already; switching it to $version and reloading the plugin"
    vault_cli secrets tune -plugin-version="$version" "$mount_path/" >/dev/null
    vault_cli plugin reload -plugin="$plugin_name" >/dev/null
  else
    log "enabling $plugin_name $version at $mount_path/"
    vault_cli secrets enable -path="$mount_path" -plugin-version="$version" \
      -description="AISquare access tokens (dev)" "$plugin_name" >/dev/null
  fi

  local running
  running=$(vault_cli read -field=running_plugin_version "sys/mounts/$mount_path")
  [[ "$running" == "$version" ]] || die "$mount_path/ runs plugin version \"$running\", expected $version"
}

# Writes the mount's config. The API key goes through stdin (api_key=-), so
# that it does not show in ps. The write logs in once to the emulator.
write_config() {
  log "writing $mount_path/config: base_url=$emulator_url, api_key of emulator user \"mount\""
  printf '%s' "$mount_api_key" |
    vault_cli write "$mount_path/config" api_key=- base_url="$emulator_url" >/dev/null
}

# Writes the dynamic role and the static role of team $1, both with the
# team's own API key, and the team's policy from bootstrap/policies/.
configure_team() {
  local team=$1
  log "writing role $mount_path/roles/$team (ttl 1h, api_key of emulator user \"$team\")"
  team_api_key "$team" |
    vault_cli write "$mount_path/roles/$team" api_key=- ttl=1h \
      description="Access tokens of $team (dev)" >/dev/null

  # The emulator issues access tokens that live 168h, its default, because
  # start-emulator.sh sets no -access-ttl. A 24h buffer replaces each token
  # a day before it expires. The plugin rejects a buffer that is not
  # shorter than the token's life, so lower it for a shorter -access-ttl.
  # Creating the role logs in once. Writing it again with the same key
  # keeps the stored session and makes no call to the emulator.
  log "writing static role $mount_path/static-roles/$team (refresh_buffer 24h, api_key of emulator user \"$team\")"
  team_api_key "$team" |
    vault_cli write "$mount_path/static-roles/$team" api_key=- refresh_buffer=24h \
      description="Shared access token of $team (dev)" >/dev/null

  log "writing policy $team from bootstrap/policies/$team.hcl"
  vault_cli policy write "$team" "$repo_root/bootstrap/policies/$team.hcl" >/dev/null
}

register_plugin
enable_mount
write_config
for team in "${teams[@]}"; do
  configure_team "$team"
done

log "done: $mount_path/ runs $plugin_name $version against $emulator_url"
