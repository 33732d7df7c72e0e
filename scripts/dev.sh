#!/usr/bin/env bash
# Runs a local dev environment until Ctrl-C. It builds the plugin and the
# emulator, finds or builds Vault, and starts the emulator and a dev Vault
# on 127.0.0.1. It configures the plugin with dynamic roles, static roles
# and policies for team-a and team-b and prints the environment to use
# them. On exit it stops everything it started. State, logs and the plugin
# folder live in .dev/. See scripts/lib.sh for the settings.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

team_token_file=$dev_dir/team-a.token

for name in vault emulator; do
  if pid=$(running_pid "$name"); then
    die "a dev environment of $dev_dir still runs ($name as PID $pid); stop it with bootstrap/stop.sh"
  fi
done

# Checking the ports first saves a build when they are taken. The start
# scripts check them again.
validate_port AISQUARE_DEV_VAULT_PORT "$vault_port" 65534
validate_port AISQUARE_DEV_EMULATOR_PORT "$emulator_port" 65535
require_free_port "$vault_port" AISQUARE_DEV_VAULT_PORT "the dev Vault's API"
require_free_port "$((vault_port + 1))" AISQUARE_DEV_VAULT_PORT "the dev Vault's cluster port, which is AISQUARE_DEV_VAULT_PORT + 1"
require_free_port "$emulator_port" AISQUARE_DEV_EMULATOR_PORT "the AISquare emulator"

scripts/build.sh

log "finding Vault; when none is installed or cached, scripts/install-vault.sh builds Vault from source, which takes about 10 minutes the first time"
VAULT_BIN=$(resolve_vault_bin)
export VAULT_BIN
vault_bin=$VAULT_BIN

# Everything started from here on is stopped by PID on exit, also after
# an error or Ctrl-C.
stop_all() {
  local status=$?
  trap - EXIT INT TERM
  log "stopping the dev environment"
  bootstrap/stop.sh || status=1
  rm -f "$team_token_file"
  exit "$status"
}
trap stop_all EXIT
# Ctrl-C and SIGTERM are the way to stop the dev environment, so after a
# clean stop the exit status is 0.
trap 'exit 0' INT TERM

# A fresh plugin folder keeps Vault from registering a binary of an earlier
# run without a version at start.
rm -rf "$plugin_dir"
mkdir -p "$plugin_dir"

bootstrap/start-emulator.sh
bootstrap/start-vault.sh
bootstrap/configure.sh

log "creating a Vault token for team-a with the team-a policy, valid for 24h"
team_token=$(vault_cli token create -policy=team-a -ttl=24h -display-name=team-a -field=token)
(umask 077 && printf '%s\n' "$team_token" >"$team_token_file")

# The printed commands name plain `vault`, so put the binary found above
# first on PATH when the shell would run another one.
path_line=
if [[ "$(command -v vault || true)" != "$vault_bin" ]]; then
  path_line="export PATH=$(dirname "$vault_bin"):\$PATH"
fi

cat <<INFO

The dev environment runs. Vault:    $vault_addr (log: $log_dir/vault.log)
                         Emulator: $(cat "$emulator_url_file") (log: $log_dir/emulator.log)

As root, in another shell:
  ${path_line:+$path_line
  }export VAULT_ADDR=$vault_addr
  export VAULT_TOKEN=$root_token

As team-a, whose token is also in $team_token_file:
  ${path_line:+$path_line
  }export VAULT_ADDR=$vault_addr
  export VAULT_TOKEN=$team_token

Vault Agent renders team-a's access tokens into .dev/agent/team-a-access-token
(from $mount_path/creds/team-a) and .dev/agent/team-a-static-access-token
(from $mount_path/static-creds/team-a), when run from the repository root with
VAULT_ADDR exported:
  vault agent -config=bootstrap/agent/agent.hcl

$ VAULT_TOKEN=<team-a token> vault read $mount_path/static-creds/team-a
INFO

# Every read of static-creds returns the same shared token until Vault
# replaces it, and makes no call to AISquare.
VAULT_TOKEN=$team_token env -u VAULT_NAMESPACE VAULT_ADDR="$vault_addr" "$vault_bin" read "$mount_path/static-creds/team-a"

# The main job ends with a dynamic creds read: a new AISquare login,
# returned as a Vault lease.
cat <<INFO

$ VAULT_TOKEN=<team-a token> vault read $mount_path/creds/team-a
INFO

VAULT_TOKEN=$team_token env -u VAULT_NAMESPACE VAULT_ADDR="$vault_addr" "$vault_bin" read "$mount_path/creds/team-a"

echo
log "running until Ctrl-C"
while true; do
  for name in vault emulator; do
    if ! running_pid "$name" >/dev/null; then
      show_log_tail "$log_dir/$name.log"
      die "$name exited on its own"
    fi
  done
  sleep 1
done
