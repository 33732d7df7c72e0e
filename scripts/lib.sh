# Shared settings and helpers of the scripts in scripts/ and bootstrap/.
# Source it from bash. Running it does nothing.
#
# Environment, all optional:
#   AISQUARE_DEV_DIR            state folder of the dev environment: PIDs,
#                               logs, plugin folder (default: <repository>/.dev)
#   AISQUARE_DEV_VAULT_PORT     port of the dev Vault on 127.0.0.1 (default
#                               8200). Vault also listens on the next port for
#                               cluster traffic.
#   AISQUARE_DEV_EMULATOR_PORT  port of the AISquare emulator on 127.0.0.1
#                               (default 8585)
#   AISQUARE_DEV_ROOT_TOKEN     root token ID of the dev Vault (default root)
#   AISQUARE_PLUGIN_VERSION     plugin version to build and register (default:
#                               VERSION in the Makefile, which make exports)
#   VAULT_BIN                   vault binary (default: what
#                               scripts/install-vault.sh finds or builds)

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
script_name=$(basename "$0")

plugin_name=vault-plugin-secrets-aisquare
mount_path=aisquare

dev_dir=${AISQUARE_DEV_DIR:-$repo_root/.dev}
[[ "$dev_dir" == /* ]] || dev_dir=$PWD/$dev_dir
pid_dir=$dev_dir/pids
log_dir=$dev_dir/logs
plugin_dir=$dev_dir/plugins
emulator_url_file=$dev_dir/emulator.url

vault_port=${AISQUARE_DEV_VAULT_PORT:-8200}
emulator_port=${AISQUARE_DEV_EMULATOR_PORT:-8585}
root_token=${AISQUARE_DEV_ROOT_TOKEN:-root}
vault_addr=http://127.0.0.1:$vault_port

# The teams of the dev environment. Each gets an emulator user, a role and a
# policy of the same name.
teams=(team-a team-b)

# Made-up API keys that only the emulator accepts. The mount's key belongs
# to the emulator user "mount", and each team's role has its own key.
mount_api_key=dev-mount-api-key
team_api_key() { printf 'dev-%s-api-key' "$1"; }

log() { printf '%s: %s\n' "$script_name" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Prints the plugin version: $AISQUARE_PLUGIN_VERSION, or VERSION from the
# Makefile, so that the build and the registration use the same value.
plugin_version() {
  if [[ -n "${AISQUARE_PLUGIN_VERSION:-}" ]]; then
    printf '%s\n' "$AISQUARE_PLUGIN_VERSION"
    return
  fi
  make -s --no-print-directory -C "$repo_root" version
}

# Prints the path of the vault binary: $VAULT_BIN after a version check, or
# what scripts/install-vault.sh finds or builds.
resolve_vault_bin() {
  "$repo_root/scripts/install-vault.sh"
}

# Runs the vault CLI at $vault_bin, which the caller sets, against the dev
# Vault as root. VAULT_NAMESPACE is
# cleared because a value left in the shell would send every request to a
# namespace that the dev Vault does not have.
vault_cli() {
  env -u VAULT_NAMESPACE VAULT_ADDR="$vault_addr" VAULT_TOKEN="$root_token" "$vault_bin" "$@"
}

# Exits unless $2 (the value of the variable named $1) is a TCP port number
# from 1 to $3.
validate_port() {
  local name=$1 value=$2 max=$3
  if ! [[ "$value" =~ ^[1-9][0-9]{0,4}$ ]] || ((value > max)); then
    die "invalid $name \"$value\": it must be a port number from 1 to $max"
  fi
}

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Exits with a message naming the port, its use and the variable that
# changes it when 127.0.0.1:$1 is in use.
require_free_port() {
  local port=$1 variable=$2 purpose=$3
  if port_in_use "$port"; then
    die "port $port on 127.0.0.1 ($purpose) is in use; set $variable to a free port, or stop what listens there (a dev environment of this repository stops with bootstrap/stop.sh)"
  fi
}

# Records PID $2 of the process named $1, started from executable $3, in
# the state folder.
record_pid() {
  mkdir -p "$pid_dir"
  printf '%s\n%s\n' "$2" "$3" >"$pid_dir/$1.pid"
}

# Prints the PID recorded for process $1 and succeeds when that process is
# still running the recorded executable. A PID file whose process has ended,
# or whose PID now belongs to another program, does not count.
running_pid() {
  local file=$pid_dir/$1.pid pid executable command
  [[ -f "$file" ]] || return 1
  { read -r pid && read -r executable; } <"$file" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  command=$(ps -p "$pid" -o args= 2>/dev/null) || return 1
  [[ "$command" == "$executable" || "$command" == "$executable "* ]] || return 1
  printf '%s\n' "$pid"
}

# Starts "$@" in the background in a session of its own, with its output
# appended to log file $1, and prints its PID. Its own session keeps a
# Ctrl-C in the terminal away from it, so that only the trap of the script
# that started it stops it, by PID. Without setsid, as on macOS, the
# command shares the caller's process group and gets the Ctrl-C too.
start_daemon() {
  local log_file=$1
  shift
  if command -v setsid >/dev/null; then
    # Without job control the background child is no process group leader,
    # so setsid runs the command in place and $! is the command's PID.
    setsid "$@" >>"$log_file" 2>&1 </dev/null &
  else
    "$@" >>"$log_file" 2>&1 </dev/null &
  fi
  printf '%s\n' "$!"
}

# Prints the last lines of log file $1 to stderr, to explain a failed start.
show_log_tail() {
  log "last lines of $1:"
  tail -n 20 "$1" >&2 || true
}
