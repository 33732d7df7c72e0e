#!/usr/bin/env bash
# Stops the processes whose PIDs the bootstrap scripts recorded in the
# state folder, Vault first, and removes their PID files. It signals only
# those PIDs, and only while they still run the recorded executable.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"

stopped=0

# Sends SIGTERM to process $1, waits up to 15s for it to exit, then sends
# SIGKILL.
stop_process() {
  local name=$1 pid
  if ! pid=$(running_pid "$name"); then
    if [[ -f "$pid_dir/$name.pid" ]]; then
      log "$name is not running; removing its stale PID file"
      rm -f "$pid_dir/$name.pid"
    fi
    return 0
  fi

  log "stopping $name (PID $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (PID $pid) did not exit within 15s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_dir/$name.pid"
  stopped=$((stopped + 1))
}

# Vault goes first, so that it stops its plugin processes while the
# emulator still responds.
for name in vault emulator; do
  stop_process "$name"
done

if ((stopped == 0)); then
  log "no process recorded in $pid_dir is running"
fi
