#!/usr/bin/env bash
# Starts `vault server -dev` on 127.0.0.1 in the background, with the root
# token ID $AISQUARE_DEV_ROOT_TOKEN and the plugin folder of the state
# folder, waits until it is unsealed and records its PID. Dev mode keeps
# everything in memory, so every start begins empty. See scripts/lib.sh for
# the settings.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

log_file=$log_dir/vault.log

if pid=$(running_pid vault); then
  die "the Vault of $dev_dir already runs as PID $pid; stop it with bootstrap/stop.sh"
fi
validate_port AISQUARE_DEV_VAULT_PORT "$vault_port" 65534
require_free_port "$vault_port" AISQUARE_DEV_VAULT_PORT "the dev Vault's API"
require_free_port "$((vault_port + 1))" AISQUARE_DEV_VAULT_PORT "the dev Vault's cluster port, which is AISQUARE_DEV_VAULT_PORT + 1"

vault_bin=$(resolve_vault_bin)
mkdir -p "$log_dir" "$plugin_dir"

# -dev-no-store-token keeps the root token out of ~/.vault-token, where it
# would replace the token of the user's real Vault.
log "starting $vault_bin server -dev on $vault_addr (log: $log_file)"
pid=$(start_daemon "$log_file" "$vault_bin" server -dev \
  -dev-listen-address="127.0.0.1:$vault_port" \
  -dev-root-token-id="$root_token" \
  -dev-plugin-dir="$plugin_dir" \
  -dev-no-store-token)
record_pid vault "$pid" "$vault_bin"

for _ in $(seq 1 60); do
  if ! kill -0 "$pid" 2>/dev/null; then
    show_log_tail "$log_file"
    die "Vault exited during start"
  fi
  # vault status exits 0 only when Vault is unsealed.
  if vault_cli status >/dev/null 2>&1; then
    log "Vault is unsealed at $vault_addr as PID $pid"
    exit 0
  fi
  sleep 0.5
done

show_log_tail "$log_file"
die "Vault was not unsealed within 30s; it still runs as PID $pid, stop it with bootstrap/stop.sh"
