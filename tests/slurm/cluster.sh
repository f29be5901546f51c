#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests: Debian's slurm-wlm, munge for
# authentication, no accounting database (the tests poll with squeue, and MinJobAge keeps
# finished jobs visible to it), and a fake `gpu` GRES so that rules asking for GPUs are accepted.
#
#   tests/slurm/cluster.sh start   install what is missing (apt), write the config, start the
#                                  daemons, wait until the node is idle; a no-op when it is up
#   tests/slurm/cluster.sh stop    stop the daemons this script started (by pid file)
#
# Needs root (slurmd runs jobs as their owner, and the config lives in /etc/slurm). State, logs
# and pid files go under $GPTPIPE_SLURM_DIR (default /tmp/gptpipe-slurm).
set -euo pipefail
dir=${GPTPIPE_SLURM_DIR:-/tmp/gptpipe-slurm}
gpus=${GPTPIPE_SLURM_GPUS:-2}
say() { echo "[cluster.sh] $*" >&2; }

running() { # pidfile program: is the process recorded there alive and that program?
  local pid
  [ -s "$1" ] && pid=$(cat "$1") && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

stop() {
  for prog in slurmd slurmctld munged; do
    local f="$dir/run/$prog.pid"
    if running "$f" "$prog"; then
      local pid; pid=$(cat "$f"); kill "$pid"
      for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      [ -d "/proc/$pid" ] && kill -9 "$pid"
      say "stopped $prog ($pid)"
    fi
    rm -f "$f"
  done
}

install() {
  local missing=() p
  for p in slurmctld slurmd slurm-client munge; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() { # prints "changed" when /etc/slurm differs from what this run wants
  local mem cpus new
  cpus=$(nproc)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$(( mem > 4096 ? mem - 2048 : mem ))  # leave the daemons and the test runner some room
  mkdir -p /etc/slurm "$dir"/{run,log,ctld,spool}
  new=$(mktemp)
  cat > "$new" <<CONF
ClusterName=gptpipe-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue for 10 minutes: the executor polls with squeue.
MinJobAge=600
KillWait=5
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  local changed=0
  cmp -s "$new" /etc/slurm/slurm.conf || { mv "$new" /etc/slurm/slurm.conf; changed=1; }
  rm -f "$new"
  # GPUs that are not there: SLURM counts one per device file, so character devices that every
  # machine has stand in for them (jobs get CUDA_VISIBLE_DEVICES, and torch finds no GPU).
  local gres="" devs=(/dev/null /dev/zero /dev/full /dev/random /dev/urandom) i
  [ "$gpus" -le ${#devs[@]} ] || { say "GPTPIPE_SLURM_GPUS=$gpus: at most ${#devs[@]}"; exit 1; }
  for ((i = 0; i < gpus; i++)); do gres+="NodeName=localhost Name=gpu File=${devs[$i]}"$'\n'; done
  [ "$(cat /etc/slurm/gres.conf 2>/dev/null)"$'\n' = "$gres" ] || { printf %s "$gres" > /etc/slurm/gres.conf; changed=1; }
  [ $changed = 1 ] && echo changed || true
}

start() {
  [ "$(id -u)" = 0 ] || { say "needs root (it installs slurm-wlm and writes /etc/slurm)"; exit 1; }
  local t0=$SECONDS
  install
  [ "$(write_config)" = changed ] && stop
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  if ! running "$dir/run/munged.pid" munged; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$dir/run/munged.pid"
  fi
  running "$dir/run/slurmctld.pid" slurmctld || /usr/sbin/slurmctld
  for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
  running "$dir/run/slurmd.pid" slurmd || /usr/sbin/slurmd -N localhost
  local state=""
  for _ in $(seq 100); do
    state=$(sinfo --noheader --nodes=localhost --format=%T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated) say "up in $((SECONDS - t0)) s: node localhost $state"; return 0;;
      down*|drain*) scontrol update nodename=localhost state=resume 2>/dev/null || true;;
    esac
    sleep 0.3
  done
  say "node not idle after 30 s (state '$state'); logs in $dir/log"; exit 1
}

case "${1:-}" in
  start) start;;
  stop) stop;;
  *) echo "usage: $0 start|stop" >&2; exit 2;;
esac
