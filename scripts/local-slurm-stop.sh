#!/usr/bin/env bash
# Stop the daemons started by local-slurm-start.sh -- only the pids recorded in /run/slurm-local/*.pid,
# each checked against its expected /proc/<pid>/comm first (never kills by name).
#   --purge  also remove state/log dirs (/var/spool/slurm-local, /var/log/slurm-local) for a clean start
set -uo pipefail
RUN=/run/slurm-local
stop() { # NAME COMM
  local f=$RUN/$1.pid p
  [ -s "$f" ] || return 0
  p=$(cat "$f")
  if [ -d "/proc/$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then
    kill "$p"
    for _ in $(seq 1 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
    if [ -d "/proc/$p" ]; then echo "stop-local-slurm: $1 ($p) ignored SIGTERM, sending SIGKILL"; kill -9 "$p"; fi
    echo "stopped $1 (pid $p)"
  else
    echo "$1: pid $p not running (or not $2), skipping"
  fi
  rm -f "$f"
}
# order: compute node, controller, accounting, database, auth
stop slurmd slurmd
stop slurmctld slurmctld
stop slurmdbd slurmdbd
stop mariadbd mariadbd
stop munged munged
if [ "${1:-}" = "--purge" ]; then
  rm -rf /var/spool/slurm-local /var/log/slurm-local
  echo "purged /var/spool/slurm-local /var/log/slurm-local"
fi
