#!/usr/bin/env bash
# Starts the AISquare emulator (bin/aisquare-emulator) on 127.0.0.1 in the
# background, with three users: "mount", whose key the mount's config
# uses, and "team-a" and "team-b", whose keys their roles use. Records the
# PID in the state folder and writes the emulator's URL to emulator.url
# there. See scripts/lib.sh for the settings.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

emulator_bin=$repo_root/bin/aisquare-emulator
log_file=$log_dir/emulator.log

[[ -x "$emulator_bin" ]] || die "$emulator_bin not found; build it with scripts/build.sh"
if pid=$(running_pid emulator); then
  die "the emulator of $dev_dir already runs as PID $pid; stop it with bootstrap/stop.sh"
fi
validate_port AISQUARE_DEV_EMULATOR_PORT "$emulator_port" 65535
require_free_port "$emulator_port" AISQUARE_DEV_EMULATOR_PORT "the AISquare emulator"

mkdir -p "$log_dir"
rm -f "$emulator_url_file"

# The keys go through the environment, so that they do not show in ps.
users="mount=$mount_api_key"
for team in "${teams[@]}"; do
  users+=",$team=$(team_api_key "$team")"
done

log "starting the emulator on 127.0.0.1:$emulator_port with users mount, ${teams[*]} (log: $log_file)"
pid=$(AISQUARE_EMULATOR_API_KEYS=$users start_daemon "$log_file" \
  "$emulator_bin" -listen "127.0.0.1:$emulator_port" -addr-file "$emulator_url_file")
record_pid emulator "$pid" "$emulator_bin"

# The emulator writes the URL file once it listens.
for _ in $(seq 1 100); do
  [[ -s "$emulator_url_file" ]] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    show_log_tail "$log_file"
    die "the emulator exited during start"
  fi
  sleep 0.1
done
[[ -s "$emulator_url_file" ]] || {
  show_log_tail "$log_file"
  die "the emulator did not listen within 10s; it still runs as PID $pid, stop it with bootstrap/stop.sh"
}

log "the emulator listens on $(cat "$emulator_url_file") as PID $pid"
