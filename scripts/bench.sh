#!/usr/bin/env bash
# Measures the plugin's read paths on a real Vault against a kv-v2 read on
# the same Vault in the same run, and writes the results section of
# docs/benchmarks.md.
#
# It builds the plugin, the emulator and the load generator in bench/,
# starts its own AISquare emulator and `vault server -dev` on free ports
# of 127.0.0.1 with state in a temporary folder, so it can run beside
# `make dev`. It mounts the plugin, writes a config, a dynamic role, a
# static role and a kv-v2 secret, and runs bench/ with a token whose
# policy allows only the benchmarked paths. On exit it stops both
# processes by PID and removes the folder, which it keeps after a failure
# for its logs.
#
# Usage: scripts/bench.sh [--requests N] [--concurrency C] [--rounds R]
#                         [--warmup W] [--output FILE]
# The defaults are what `make bench` runs. --output FILE must contain the
# two marker lines of docs/benchmarks.md, and only the lines between them
# are replaced.
#
# Environment: VAULT_BIN and AISQUARE_PLUGIN_VERSION, as in scripts/lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

requests=10000
concurrency=8
rounds=10
warmup=100
output=docs/benchmarks.md
command_line="scripts/bench.sh${*:+ $*}"

usage() {
  echo "usage: scripts/bench.sh [--requests N] [--concurrency C] [--rounds R] [--warmup W] [--output FILE]" >&2
  exit 2
}

while (($# > 0)); do
  case $1 in
    --requests | --concurrency | --rounds | --warmup | --output)
      (($# >= 2)) || die "$1 needs a value"
      case $1 in
        --requests) requests=$2 ;;
        --concurrency) concurrency=$2 ;;
        --rounds) rounds=$2 ;;
        --warmup) warmup=$2 ;;
        --output) output=$2 ;;
      esac
      shift 2
      ;;
    -h | --help) usage ;;
    *)
      log "unknown argument \"$1\""
      usage
      ;;
  esac
done

for value in "$requests" "$concurrency" "$rounds" "$warmup"; do
  [[ "$value" =~ ^[0-9]+$ ]] || die "invalid number \"$value\": --requests, --concurrency, --rounds and --warmup take whole numbers"
done

readonly start_marker='<!-- bench results: start -->'
readonly end_marker='<!-- bench results: end -->'
[[ -f "$output" ]] || die "$output not found; --output must name an existing file with the marker lines"
grep -qxF "$start_marker" "$output" && grep -qxF "$end_marker" "$output" ||
  die "$output lacks the lines \"$start_marker\" and \"$end_marker\" that enclose the results section"

# The emulator user whose key the mount's config uses, and the names of the
# roles and the kv-v2 secret. The key is made up and only this run's
# emulator accepts it.
readonly api_key=bench-mount-api-key
readonly role=bench
# The dev server mounts kv-v2 at secret/, where a secret's data is read
# under secret/data/.
readonly kv_path=secret/bench kv_data_path=secret/data/bench

scripts/build.sh
vault_bin=$(resolve_vault_bin)
version=$(plugin_version)

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/aisquare-bench.XXXXXX")
log "state and logs go to $work_dir"
go build -o "$work_dir/bench" ./bench

emulator_pid=
vault_pid=

# Sends SIGTERM to process $2, named $1, when it still runs executable $3,
# and sends SIGKILL when it has not exited 15s later.
stop_process() {
  local name=$1 pid=$2 executable=$3 command
  [[ -n "$pid" ]] || return 0
  command=$(ps -p "$pid" -o args= 2>/dev/null) || return 0
  [[ "$command" == "$executable" || "$command" == "$executable "* ]] || return 0

  log "stopping $name (PID $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name (PID $pid) did not exit within 15s of SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# Stops Vault first, so that it stops its plugin process while the emulator
# still responds, then the emulator. Keeps the state folder after a failure.
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_process vault "$vault_pid" "$vault_bin"
  stop_process emulator "$emulator_pid" "$repo_root/bin/aisquare-emulator"
  if ((status == 0)); then
    rm -rf "$work_dir"
  else
    log "failed; the logs are kept in $work_dir"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints a port P such that nothing listens on P and P + 1 of 127.0.0.1,
# for Vault's API and cluster listeners. P lies below the kernel's
# ephemeral port range, where the client side of a connection, which no
# connect test finds, could hold it.
free_port_pair() {
  local low=32768 port
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((low > 10002)) || die "the ephemeral port range starts at $low, which leaves no room below it for Vault's ports"
  for _ in $(seq 1 50); do
    port=$((10000 + RANDOM % (low - 10002)))
    ((port == 8200 || port == 8201 || port == 8585)) && continue
    if ! port_in_use "$port" && ! port_in_use "$((port + 1))"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  die "found no two free adjacent ports on 127.0.0.1 in 50 tries"
}

# The emulator picks a free port itself (port 0) and writes its URL to a
# file. -quiet keeps its per-request log out of the measured time.
emulator_log=$work_dir/emulator.log
emulator_url_file=$work_dir/emulator.url
log "starting the emulator on a free port of 127.0.0.1 (log: $emulator_log)"
emulator_pid=$(AISQUARE_EMULATOR_API_KEYS="mount=$api_key" start_daemon "$emulator_log" \
  "$repo_root/bin/aisquare-emulator" -listen 127.0.0.1:0 -addr-file "$emulator_url_file" -quiet)
for _ in $(seq 1 100); do
  [[ -s "$emulator_url_file" ]] && break
  kill -0 "$emulator_pid" 2>/dev/null || { show_log_tail "$emulator_log"; die "the emulator exited during start"; }
  sleep 0.1
done
[[ -s "$emulator_url_file" ]] || { show_log_tail "$emulator_log"; die "the emulator did not listen within 10s"; }
emulator_url=$(cat "$emulator_url_file")

root_token=bench-root-$RANDOM$RANDOM
vault_log=$work_dir/vault.log
plugin_dir=$work_dir/plugins
mkdir -p "$plugin_dir"

# Starts `vault server -dev` on a free port, sets vault_pid and vault_addr,
# which vault_cli in scripts/lib.sh uses, and waits until it is unsealed.
# Returns 2 when another program took the port first, so that the caller
# can try another one.
start_vault() {
  local port
  port=$(free_port_pair) || exit 1
  vault_addr=http://127.0.0.1:$port

  # -dev-no-store-token keeps the root token out of ~/.vault-token.
  log "starting $vault_bin server -dev on $vault_addr (log: $vault_log)"
  : >"$vault_log"
  vault_pid=$(start_daemon "$vault_log" "$vault_bin" server -dev \
    -dev-listen-address="127.0.0.1:$port" \
    -dev-root-token-id="$root_token" \
    -dev-plugin-dir="$plugin_dir" \
    -dev-no-store-token)

  for _ in $(seq 1 60); do
    if ! kill -0 "$vault_pid" 2>/dev/null; then
      vault_pid=
      if grep -q 'address already in use' "$vault_log"; then
        log "port $port or $((port + 1)) was taken before Vault listened"
        return 2
      fi
      show_log_tail "$vault_log"
      die "Vault exited during start"
    fi
    vault_cli status >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  show_log_tail "$vault_log"
  die "Vault was not unsealed within 30s"
}

for attempt in 1 2 3; do
  start_vault && break
  ((attempt < 3)) || die "Vault found no free port in 3 attempts"
done

# The same steps as bootstrap/configure.sh: install the binary, register it
# with its SHA-256 and version, and enable it at aisquare/.
install -m 0755 "bin/$plugin_name" "$plugin_dir/$plugin_name"
sha256=$(sha256sum "$plugin_dir/$plugin_name" | cut -d ' ' -f 1)
log "registering and enabling $plugin_name $version at $mount_path/"
vault_cli plugin register -sha256="$sha256" -version="$version" secret "$plugin_name" >/dev/null
vault_cli secrets enable -path="$mount_path" -plugin-version="$version" "$plugin_name" >/dev/null

# base_url must name this run's emulator: the plugin's default is the real
# AISquare API.
log "writing $mount_path/config (base_url=$emulator_url), role $role and static role $role"
printf '%s' "$api_key" | vault_cli write "$mount_path/config" api_key=- base_url="$emulator_url" >/dev/null
vault_cli write "$mount_path/roles/$role" ttl=1h >/dev/null
# The emulator's access tokens live 168h, so the default refresh_buffer of
# 24h leaves the session alone during the run.
vault_cli write -f "$mount_path/static-roles/$role" >/dev/null

# The kv-v2 secret contains the same fields and values as a static-creds
# response, so both reads return about the same number of bytes.
log "writing kv-v2 secret $kv_path with the fields of a static-creds response"
vault_cli read -format=json "$mount_path/static-creds/$role" |
  perl -MJSON::PP -0777 -ne 'print encode_json(decode_json($_)->{data})' |
  vault_cli kv put "$kv_path" - >/dev/null

# The measured token has an ordinary policy, so every request passes the
# ACL check as a team's token would. Renewals use sys/leases/renew of
# Vault's default policy.
vault_cli policy write bench - >/dev/null <<EOF
path "$kv_data_path" { capabilities = ["read"] }
path "$mount_path/static-creds/$role" { capabilities = ["read"] }
path "$mount_path/creds/$role" { capabilities = ["read"] }
path "$mount_path/config" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
EOF
bench_token=$(vault_cli token create -policy=bench -ttl=1h -field=token)

bench_args=(
  -requests "$requests" -concurrency "$concurrency" -rounds "$rounds" -warmup "$warmup"
  -emulator "$emulator_url"
  -read "kv-v2=$kv_data_path"
  -read "static-creds=$mount_path/static-creds/$role"
  -read "creds=$mount_path/creds/$role"
  -renew "renew=$mount_path/creds/$role"
  -read "config=$mount_path/config"
)
log "running bench/ with ${bench_args[*]}"
load_average=$(cut -d ' ' -f 1-3 /proc/loadavg 2>/dev/null || echo unknown)
env -u VAULT_NAMESPACE VAULT_ADDR="$vault_addr" VAULT_TOKEN="$bench_token" \
  "$work_dir/bench" "${bench_args[@]}" >"$work_dir/table.md"

# Totals over the whole run: setup, warmup, timed parts and the untimed
# revocations of every lease that bench/ caused.
upstream_totals=$(curl -fsS "$emulator_url/_emulator/counters" |
  perl -MJSON::PP -0777 -ne '$t = decode_json($_)->{total};
    print join ", ", map { "$_ $t->{$_}" } qw(logins refreshes revocations verifications)')

# A Vault built by scripts/install-vault.sh prints the current time as its
# build date, so only the version is kept.
vault_version=$("$vault_bin" version | head -n 1 | sed 's/,.*//')
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
commit=$(git rev-parse --short HEAD)
if [[ -n "$(git status --porcelain -- '*.go' go.mod go.sum)" ]]; then
  commit+=" with uncommitted changes to Go files"
fi

results=$work_dir/results.md
{
  printf '%s\n\n' "Measured on $(date -u '+%Y-%m-%d %H:%M UTC') by \`$command_line\`:"
  printf -- '- Machine: %s CPUs (`nproc`), %s, load average %s at the start\n' \
    "$(nproc)" "${cpu_model:-CPU model unknown}" "$load_average"
  printf -- '- Software: %s, %s, plugin %s at commit %s\n' \
    "$(go version | cut -d ' ' -f 3-)" "$vault_version" "$version" "$commit"
  printf -- '- Parameters: %s requests per scenario in %s rounds, %s concurrent clients, %s untimed warmup requests per scenario\n\n' \
    "$requests" "$rounds" "$concurrency" "$warmup"
  cat "$work_dir/table.md"
  printf '\n%s\n' "Emulator totals over the whole run, including setup, warmup and revocations: $upstream_totals."
} >"$results"

# Replaces the lines between the markers with the results.
RESULTS=$results START=$start_marker END=$end_marker perl -i -ne '
  BEGIN { local $/; open my $f, "<", $ENV{RESULTS} or die "open $ENV{RESULTS}: $!"; $new = <$f>; }
  if ($_ eq "$ENV{END}\n") { $skip = 0; }
  print unless $skip;
  if ($_ eq "$ENV{START}\n") { print "\n", $new, "\n"; $skip = 1; }
' "$output"

cat "$work_dir/table.md"
log "wrote the results to $output"
