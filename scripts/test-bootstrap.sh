#!/usr/bin/env bash
# Tests the bootstrap scripts against a real dev Vault and the emulator,
# which it starts in a temporary state folder on ports of their own. It
# checks the start scripts' guards, what the team policies allow and deny,
# that static-creds reads share one token without a new login, and that
# the example Vault Agent config renders both of team-a's tokens. At exit
# it stops everything by PID. make test runs it.
#
# Environment, all optional:
#   AISQUARE_TEST_VAULT_PORT     port of the test Vault (default 18200);
#                                the next port must be free too
#   AISQUARE_TEST_EMULATOR_PORT  port of the test emulator (default 18585)
#   VAULT_BIN                    vault binary (default: what
#                                scripts/install-vault.sh finds or builds)
set -euo pipefail

state_dir=$(mktemp -d "${TMPDIR:-/tmp}/aisquare-bootstrap-test.XXXXXX")
export AISQUARE_DEV_DIR=$state_dir
export AISQUARE_DEV_VAULT_PORT=${AISQUARE_TEST_VAULT_PORT:-18200}
export AISQUARE_DEV_EMULATOR_PORT=${AISQUARE_TEST_EMULATOR_PORT:-18585}
export AISQUARE_DEV_ROOT_TOKEN=bootstrap-test-root
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

passed=0
failed=0
agent_pid=

pass() {
  passed=$((passed + 1))
  printf 'ok:   %s\n' "$1"
}

fail() {
  failed=$((failed + 1))
  printf 'FAIL: %s\n' "$1"
  if [[ -n "${2:-}" ]]; then
    printf '%s\n' "$2" | sed 's/^/      /'
  fi
}

# Stops the agent and the bootstrap processes by PID. The state folder is
# kept after a failure, for its logs.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$agent_pid" ]] && kill -0 "$agent_pid" 2>/dev/null; then
    log "stopping Vault Agent (PID $agent_pid)"
    kill -TERM "$agent_pid" 2>/dev/null || true
  fi
  bootstrap/stop.sh || status=1
  if ((failed == 0 && status == 0)); then
    rm -rf "$state_dir"
  else
    log "kept $state_dir for its logs"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs the vault CLI with Vault token $1.
vault_as() {
  local token=$1
  shift
  env -u VAULT_NAMESPACE VAULT_ADDR="$vault_addr" VAULT_TOKEN="$token" "$vault_bin" "$@"
}

# Passes check $1 when the command after it succeeds.
expect_success() {
  local name=$1 output
  shift
  if output=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name" "$output"
  fi
}

# Passes check $1 when the command after it fails and its output contains
# the text $2.
expect_failure() {
  local name=$1 expected=$2 output
  shift 2
  if output=$("$@" 2>&1); then
    fail "$name: the command succeeded" "$output"
  elif [[ "$output" != *"$expected"* ]]; then
    fail "$name: the output lacks \"$expected\"" "$output"
  else
    pass "$name"
  fi
}

# Passes check $1 when the Bearer token $2 belongs to emulator user $3.
expect_token_of() {
  local name=$1 token=$2 user=$3 output
  if output=$(curl -sS --max-time 10 -H "Authorization: Bearer $token" \
    "$(cat "$emulator_url_file")/api/v1/iam/iamuserdetails/me/" 2>&1) &&
    [[ "$output" == *"\"username\":\"$user\""* ]]; then
    pass "$name"
  else
    fail "$name" "$output"
  fi
}

# Prints the number of successful logins of emulator user $1, from the
# emulator's /_emulator/counters control. It fails when the request fails
# or the output has no count for the user.
emulator_logins() {
  local user=$1 counters count
  counters=$(curl -sS --fail --max-time 10 "$(cat "$emulator_url_file")/_emulator/counters") || return 1
  # encoding/json writes struct fields in their declared order, so
  # "logins" is the first field of each user's counters.
  count=$(sed -n "s/.*\"users\":{.*\"$user\":{\"logins\":\([0-9][0-9]*\),.*/\1/p" <<<"$counters")
  if [[ -z "$count" ]]; then
    log "no login count for user $user in the counters: $counters"
    return 1
  fi
  printf '%s\n' "$count"
}

log "state folder $state_dir, Vault port $vault_port, emulator port $emulator_port"
scripts/build.sh
VAULT_BIN=$(resolve_vault_bin)
export VAULT_BIN
vault_bin=$VAULT_BIN

# Guards that must reject bad settings before anything starts.
expect_failure "start-vault rejects a port that is no number" "invalid AISQUARE_DEV_VAULT_PORT" \
  env AISQUARE_DEV_VAULT_PORT=82oo bootstrap/start-vault.sh
expect_failure "start-vault rejects port 65535, whose cluster port is out of range" "from 1 to 65534" \
  env AISQUARE_DEV_VAULT_PORT=65535 bootstrap/start-vault.sh
expect_failure "configure fails without an emulator" "start the emulator with bootstrap/start-emulator.sh" \
  bootstrap/configure.sh

bootstrap/start-emulator.sh
bootstrap/start-vault.sh
bootstrap/configure.sh

# Guards of a running environment.
expect_failure "start-emulator refuses a second emulator" "already runs as PID" bootstrap/start-emulator.sh
expect_failure "start-vault refuses a second Vault" "already runs as PID" bootstrap/start-vault.sh
other_state=$state_dir/other
expect_failure "start-emulator names a busy port and its variable" \
  "port $emulator_port on 127.0.0.1 (the AISquare emulator) is in use; set AISQUARE_DEV_EMULATOR_PORT" \
  env AISQUARE_DEV_DIR="$other_state" bootstrap/start-emulator.sh
expect_failure "start-vault names a busy port and its variable" \
  "port $vault_port on 127.0.0.1 (the dev Vault's API) is in use; set AISQUARE_DEV_VAULT_PORT" \
  env AISQUARE_DEV_DIR="$other_state" bootstrap/start-vault.sh
expect_success "configure runs again on a configured Vault" bootstrap/configure.sh

version=$(plugin_version)
running=$(vault_cli read -field=running_plugin_version "sys/mounts/$mount_path" 2>&1 || true)
if [[ "$running" == "$version" ]]; then
  pass "the mount runs plugin version $version"
else
  fail "the mount runs plugin version $version" "running_plugin_version: $running"
fi

team_a_token=$(vault_cli token create -policy=team-a -ttl=10m -field=token)
team_b_token=$(vault_cli token create -policy=team-b -ttl=10m -field=token)

# What each team may do on the mount.
if access_token=$(vault_as "$team_a_token" read -field=access_token "$mount_path/creds/team-a" 2>&1); then
  pass "team-a reads its creds"
  expect_token_of "team-a's creds are an access token of emulator user team-a" "$access_token" team-a
else
  fail "team-a reads its creds" "$access_token"
fi
if access_token=$(vault_as "$team_b_token" read -field=access_token "$mount_path/creds/team-b" 2>&1); then
  pass "team-b reads its creds"
  expect_token_of "team-b's creds are an access token of emulator user team-b" "$access_token" team-b
else
  fail "team-b reads its creds" "$access_token"
fi
expect_failure "team-a may not read team-b's creds" "permission denied" \
  vault_as "$team_a_token" read "$mount_path/creds/team-b"
expect_failure "team-b may not read team-a's creds" "permission denied" \
  vault_as "$team_b_token" read "$mount_path/creds/team-a"
expect_failure "team-a may not read the config" "permission denied" \
  vault_as "$team_a_token" read "$mount_path/config"
expect_failure "team-a may not write the config" "permission denied" \
  vault_as "$team_a_token" write "$mount_path/config" base_url=http://127.0.0.1:1
expect_failure "team-a may not read its role" "permission denied" \
  vault_as "$team_a_token" read "$mount_path/roles/team-a"
expect_failure "team-a may not list the roles" "permission denied" \
  vault_as "$team_a_token" list "$mount_path/roles"

# Static roles: each team reads only its own shared token, and may not
# manage or rotate the static role.
if static_token=$(vault_as "$team_a_token" read -field=access_token "$mount_path/static-creds/team-a" 2>&1); then
  pass "team-a reads its static creds"
  expect_token_of "team-a's static creds are an access token of emulator user team-a" "$static_token" team-a
else
  fail "team-a reads its static creds" "$static_token"
  static_token=
fi
if access_token=$(vault_as "$team_b_token" read -field=access_token "$mount_path/static-creds/team-b" 2>&1); then
  pass "team-b reads its static creds"
  expect_token_of "team-b's static creds are an access token of emulator user team-b" "$access_token" team-b
else
  fail "team-b reads its static creds" "$access_token"
fi
expect_failure "team-a may not read team-b's static creds" "permission denied" \
  vault_as "$team_a_token" read "$mount_path/static-creds/team-b"
expect_failure "team-b may not read team-a's static creds" "permission denied" \
  vault_as "$team_b_token" read "$mount_path/static-creds/team-a"
expect_failure "team-a may not read its static role" "permission denied" \
  vault_as "$team_a_token" read "$mount_path/static-roles/team-a"
expect_failure "team-a may not rotate its static role" "permission denied" \
  vault_as "$team_a_token" write -f "$mount_path/static-roles/team-a/rotate"

# A static-creds read returns the stored token and makes no call to the
# emulator, so a second read returns the same token with no new login.
if [[ -n "$static_token" ]]; then
  logins_before=$(emulator_logins team-a) || logins_before=
  if second_token=$(vault_as "$team_a_token" read -field=access_token "$mount_path/static-creds/team-a" 2>&1); then
    if [[ "$second_token" == "$static_token" ]]; then
      pass "a second static creds read returns the same token"
    else
      fail "a second static creds read returns the same token" "the second read returned another access token"
    fi
  else
    fail "a second static creds read returns the same token" "$second_token"
  fi
  logins_after=$(emulator_logins team-a) || logins_after=
  if [[ -n "$logins_before" && "$logins_after" == "$logins_before" ]]; then
    pass "a second static creds read makes no login"
  else
    fail "a second static creds read makes no login" "logins of emulator user team-a: ${logins_before:-unknown} before, ${logins_after:-unknown} after"
  fi
fi

# Leases: each team renews and revokes its own, and may not revoke the
# other team's.
team_a_lease=$(vault_as "$team_a_token" read -field=lease_id "$mount_path/creds/team-a")
team_b_lease=$(vault_as "$team_b_token" read -field=lease_id "$mount_path/creds/team-b")
expect_success "team-a renews its lease with vault lease renew" \
  vault_as "$team_a_token" lease renew -increment=30m "$team_a_lease"
expect_success "team-a renews its lease by ID in the path" \
  vault_as "$team_a_token" write -f "sys/leases/renew/$team_a_lease"
expect_failure "team-a may not revoke team-b's lease" "permission denied" \
  vault_as "$team_a_token" lease revoke "$team_b_lease"
expect_success "team-a revokes its lease" vault_as "$team_a_token" lease revoke -sync "$team_a_lease"
expect_failure "the revoked lease is gone" "invalid lease" vault_cli lease lookup "$team_a_lease"
expect_success "team-b revokes its lease" vault_as "$team_b_token" lease revoke -sync "$team_b_lease"

# The example Vault Agent config, run as a user would: from a folder with
# bootstrap/ and .dev/team-a.token, because its paths are relative.
agent_dir=$state_dir/agent-workdir
mkdir -p "$agent_dir/.dev"
ln -s "$repo_root/bootstrap" "$agent_dir/bootstrap"
(umask 077 && printf '%s\n' "$team_a_token" >"$agent_dir/.dev/team-a.token")
rendered=$agent_dir/.dev/agent/team-a-access-token
rendered_static=$agent_dir/.dev/agent/team-a-static-access-token
agent_log=$log_dir/agent.log

log "starting Vault Agent with bootstrap/agent/agent.hcl (log: $agent_log)"
agent_pid=$(cd "$agent_dir" && start_daemon "$agent_log" \
  env -u VAULT_TOKEN -u VAULT_NAMESPACE VAULT_ADDR="$vault_addr" \
  "$vault_bin" agent -config=bootstrap/agent/agent.hcl)
for _ in $(seq 1 100); do
  [[ -s "$rendered" && -s "$rendered_static" ]] && break
  kill -0 "$agent_pid" 2>/dev/null || break
  sleep 0.2
done
if [[ -s "$rendered" ]]; then
  pass "Vault Agent renders team-a's access token"
  expect_token_of "the rendered token is an access token of emulator user team-a" "$(cat "$rendered")" team-a
  perms=$(stat -c %a "$rendered")
  if [[ "$perms" == 600 ]]; then
    pass "the rendered token file has mode 0600"
  else
    fail "the rendered token file has mode 0600" "mode: $perms"
  fi
else
  fail "Vault Agent renders team-a's access token" "$(tail -n 20 "$agent_log")"
fi
if [[ -s "$rendered_static" ]]; then
  pass "Vault Agent renders team-a's static access token"
  expect_token_of "the rendered static token is an access token of emulator user team-a" "$(cat "$rendered_static")" team-a
  # The token of the static creds reads above is 144h from its refresh,
  # so Agent must read the same one. The check needs a successful read.
  if [[ -n "$static_token" ]]; then
    if [[ "$(cat "$rendered_static")" == "$static_token" ]]; then
      pass "the rendered static token matches static creds"
    else
      fail "the rendered static token matches static creds" \
        "the rendered file contains another access token than the static creds reads returned"
    fi
  fi
  perms=$(stat -c %a "$rendered_static")
  if [[ "$perms" == 600 ]]; then
    pass "the rendered static token file has mode 0600"
  else
    fail "the rendered static token file has mode 0600" "mode: $perms"
  fi
else
  fail "Vault Agent renders team-a's static access token" "$(tail -n 20 "$agent_log")"
fi
if kill -0 "$agent_pid" 2>/dev/null; then
  pass "Vault Agent keeps running after the render"
  kill -TERM "$agent_pid"
  for _ in $(seq 1 50); do
    kill -0 "$agent_pid" 2>/dev/null || break
    sleep 0.1
  done
else
  fail "Vault Agent keeps running after the render" "$(tail -n 20 "$agent_log")"
fi

# Stopping: nothing that the scripts started may survive, plugin processes
# included.
recorded_pids=$(cat "$pid_dir"/*.pid 2>/dev/null | grep -E '^[0-9]+$' || true)
expect_success "stop.sh stops the environment" bootstrap/stop.sh
survivors=
for pid in $recorded_pids $agent_pid; do
  if kill -0 "$pid" 2>/dev/null; then
    survivors+=" $pid"
  fi
done
plugin_processes=$(ps -eo pid=,args= | grep -F "$plugin_dir/" | grep -v grep || true)
if [[ -z "$survivors" && -z "$plugin_processes" ]]; then
  pass "no started process survives stop.sh"
else
  fail "no started process survives stop.sh" "still running:$survivors $plugin_processes"
fi

echo
echo "bootstrap: $passed passed, $failed failed"
((failed == 0))
