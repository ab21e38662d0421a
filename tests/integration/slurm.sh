#!/usr/bin/env bash
# Kiln under a real Slurm (issue 6): brings up a private one-node cluster (munged,
# slurmctld, slurmd from Debian) in a temp dir, submits examples/slurm/kiln-job.sbatch
# jobs that boot the test guest, and checks
#   1. each job's exit code is the guest's (0, 3, 42);
#   2. two 1-CPU jobs running 2-vCPU VMs at once: every vCPU thread stays on the one CPU
#      Slurm bound its job to (live, from /proc, and at exit, from --stats-json), and
#      the two jobs got different CPUs;
#   3. scancel of a job running a VM with a snapshot=on disk: kiln ends on SIGTERM
#      (exit 143, well before KillWait's SIGKILL), no kiln process is left, the overlay
#      directory ($TMPDIR) is empty and the base image is bit-identical.
# The cluster is the test's own: its config, munge key and socket, ports, state, spool
# and logs are in the temp dir; nothing is written to /etc, and every daemon and job is
# stopped however the test ends.
#
# usage: slurm.sh KILN_BIN TESTGUEST_ELF JOB_SCRIPT
# Exit 0 pass, 1 fail, 77 skipped (not root, or Slurm/munge not installed, outside CI).
set -euo pipefail

kiln="$(realpath "$1")"
guest="$(realpath "$2")"
job_script="$(realpath "$3")"
kill_wait=30 # slurm.conf KillWait: SIGKILL follows scancel's SIGTERM after this long

skip() {
  echo "SKIP: $*"
  # In CI the packages are installed by scripts/install-deps: a skip there hides a bug.
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "needs root (slurmd runs jobs as root here)"
for cmd in munged slurmctld slurmd sbatch scontrol scancel sinfo ss; do
  command -v "$cmd" >/dev/null || skip "$cmd not installed (scripts/install-deps installs it)"
done

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }
expect() { # WHAT_IF_TRUE WHAT_IF_FALSE COMMAND...
  local ok="$1" bad="$2"
  shift 2
  if "$@"; then pass "$ok"; else fail "$bad"; fi
}
die() {
  echo "FAIL: $*"
  exit 1
}

dir="$(mktemp -d /tmp/kiln-slurm-XXXXXX)"
chmod 755 "$dir" # munged wants its socket's directory searchable by every user
export SLURM_CONF="$dir/slurm.conf"
daemons=() # pids of munged, slurmctld, slurmd
controller=false # slurmctld started: scancel can reach it (it waits a minute for one)

# Processes of this cluster, by PREDICATE PID: those whose environment names this test's
# slurm.conf (the daemons, the slurmstepds that leave slurmd's process tree, and every
# job's processes). Other tests may run kiln at the same time; theirs are not ours.
ours() {
  local p
  for p in /proc/[0-9]*; do
    grep -qzxF "SLURM_CONF=$SLURM_CONF" "$p/environ" 2>/dev/null && "$1" "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}
is_stepd() { [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == slurmstepd ]]; }
is_kiln() { [[ "$(readlink "/proc/$1/exe" 2>/dev/null)" == "$kiln" ]]; }

stop_pid() { # PID...: SIGTERM, up to 10 s, then SIGKILL
  local p i
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for ((i = 0; i < 100; i++)); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  set +e
  if $controller; then
    scancel --quiet --partition=kiln 2>/dev/null
    local i
    for ((i = 0; i < 100; i++)); do
      [[ -z "$(ours is_stepd)" && -z "$(ours is_kiln)" ]] && break
      sleep 0.1
    done
  fi
  # shellcheck disable=SC2046
  stop_pid $(ours is_stepd) $(ours is_kiln)
  # slurmd, slurmctld, then munged: the reverse of the start.
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do stop_pid "${daemons[i]}"; done
  wait 2>/dev/null
  if ((status != 0)); then
    for log in "$dir"/*.log; do
      [[ -f "$log" ]] || continue
      echo "---- $(basename "$log") (last 30 lines)"
      tail -n 30 "$log"
    done
  fi
  rm -rf "$dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two TCP ports nobody listens on, for slurmctld and slurmd.
free_ports() {
  local used port n=0
  used="$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)"
  for ((port = 20000 + RANDOM % 20000; n < 2; port++)); do
    grep -qx "$port" <<<"$used" && continue
    echo "$port"
    n=$((n + 1))
  done
}

wait_until() { # SECONDS COMMAND...: true once COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# ---- the cluster ---------------------------------------------------------------------
mkdir "$dir/state" "$dir/spool" "$dir/jobs" "$dir/overlays"
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 600 "$dir/munge.key"
munged --foreground --socket="$dir/munge.sock" --key-file="$dir/munge.key" \
  --pid-file="$dir/munged.pid" --seed-file="$dir/munged.seed" --log-file="$dir/munged.log" \
  >>"$dir/munged.log" 2>&1 &
daemons+=($!)
wait_until 10 test -S "$dir/munge.sock" || die "munged did not create its socket"

mapfile -t ports < <(free_ports)
ctld_port="${ports[0]}" slurmd_port="${ports[1]}"
node_line="$(slurmd -C | head -n 1)" # NodeName=HOST CPUs=... RealMemory=...
node="$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' <<<"$node_line")"
[[ -n "$node" ]] || die "slurmd -C printed no NodeName: $node_line"
cat >"$SLURM_CONF" <<EOF
ClusterName=kilntest
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
PlugStackConfig=$dir/plugstack.conf
MailProg=/bin/true
# No cgroups: processes tracked by parentage, CPUs bound with sched_setaffinity. Each
# job gets whole cores (cons_tres, CR_Core) and its tasks, the batch step included,
# are bound to them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
KillWait=$kill_wait
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=kiln Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
: >"$dir/plugstack.conf"

slurmctld -D -i >>"$dir/slurmctld.log" 2>&1 &
daemons+=($!)
controller=true
slurmd -D >>"$dir/slurmd.log" 2>&1 &
daemons+=($!)
node_idle() { [[ "$(sinfo -h -n "$node" -o %t 2>/dev/null)" == idle ]]; }
wait_until 60 node_idle || die "node $node did not become idle: $(sinfo 2>&1)"
cpus_total="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")"
threads_per_core="$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$node_line")"
echo "cluster up in ${SECONDS}s: node $node, $cpus_total CPUs, ports $ctld_port/$slurmd_port"

# ---- helpers for jobs ----------------------------------------------------------------
# submit SBATCH_OPTION... -- KILN_RUN_ARG...: the job id. The job is the example script.
submit() {
  local opts=()
  while [[ "$1" != -- ]]; do
    opts+=("$1")
    shift
  done
  shift
  KILN="$kiln" sbatch --parsable --chdir="$dir" --output="$dir/jobs/%j.out" "${opts[@]}" "$job_script" "$@"
}
job_field() { # ID FIELD: FIELD's value in `scontrol show job`
  scontrol show job -o "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
job_done() {
  case "$(job_field "$1" JobState)" in
  PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | "") return 1 ;;
  *) return 0 ;;
  esac
}
job_line() { sed -n 's/^kiln-job: //p' "$dir/jobs/$1.out"; } # job=ID pid=P host=H cpus=L
job_var() { job_line "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
vm=(--kernel "$guest" --memory 64M --console none)

# ---- 1. the job's exit code is the guest's -------------------------------------------
declare -A want=()
for status in 0 3 42; do
  id="$(submit -- "${vm[@]}" --cmdline "job=exit status=$status")"
  want[$id]=$status
done
for id in "${!want[@]}"; do
  wait_until 60 job_done "$id" || die "job $id (exit status=${want[$id]}) did not end"
  got="$(job_field "$id" ExitCode)"
  if [[ "$got" == "${want[$id]}:0" ]]; then
    pass "job $id: guest exit status ${want[$id]} is the job's ExitCode $got ($(job_field "$id" JobState))"
  else
    fail "job $id: guest exit status ${want[$id]}, job ExitCode $got; output: $(cat "$dir/jobs/$id.out")"
  fi
done

# ---- 2. vCPU threads stay on the CPUs Slurm bound the job to -------------------------
# A CPU list as the kernel writes it (0-2,5) as words (0 1 2 5).
cpu_words() {
  local part parts
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ "$part" == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done | tr '\n' ' '
}
# Threads named vcpu* of PID and their Cpus_allowed_list, one "name list" a line.
vcpu_affinity() {
  local t
  for t in /proc/"$1"/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == vcpu* ]] || continue
    echo "$(cat "$t/comm") $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$t/status")"
  done
}
if ((cpus_total / threads_per_core < 2)); then
  echo "skipped check 2: needs two cores, so that two jobs run side by side"
else
  ids=()
  for i in 0 1; do
    ids+=("$(submit --cpus-per-task=1 -- "${vm[@]}" --cpus 2 --cmdline "job=compute seconds=4" \
      --stats-json "$dir/stats-$i.json")")
  done
  both_running() {
    [[ "$(job_field "${ids[0]}" JobState)" == RUNNING && "$(job_field "${ids[1]}" JobState)" == RUNNING ]]
  }
  two_vcpus() { [[ "$(vcpu_affinity "$1" | wc -l)" -eq 2 ]]; }
  wait_until 60 both_running || die "jobs ${ids[*]} did not run side by side"
  job_cpus=()
  for i in 0 1; do
    id="${ids[i]}"
    wait_until 20 grep -qs '^kiln-job:' "$dir/jobs/$id.out" || die "job $id printed no kiln-job line"
    job_cpus+=("$(job_var "$id" cpus)")
    pid="$(job_var "$id" pid)"
    wait_until 20 two_vcpus "$pid" || die "job $id: kiln (pid $pid) has no two vCPU threads"
    live="$(vcpu_affinity "$pid" | sort | tr '\n' ' ')"
    # One core's CPUs (one CPU here), not the node's: Slurm did bind the job.
    read -ra bound <<<"$(cpu_words "${job_cpus[i]}")"
    if [[ "$live" == "vcpu0 ${job_cpus[i]} vcpu1 ${job_cpus[i]} " ]] && ((${#bound[@]} >= 1 && ${#bound[@]} < cpus_total)); then
      pass "job $id bound to CPUs ${job_cpus[i]}: running vCPU threads $live"
    else
      fail "job $id bound to CPUs '${job_cpus[i]}' of $cpus_total: running vCPU threads $live"
    fi
  done
  shared="$(comm -12 <(cpu_words "${job_cpus[0]}" | tr ' ' '\n' | sort) <(cpu_words "${job_cpus[1]}" | tr ' ' '\n' | sort))"
  expect "the two jobs running side by side got disjoint CPUs (${job_cpus[0]} and ${job_cpus[1]})" \
    "the two jobs running side by side share CPUs: ${job_cpus[0]} and ${job_cpus[1]}" test -z "$shared"
  for i in 0 1; do
    id="${ids[i]}"
    wait_until 60 job_done "$id" || die "job $id (compute) did not end"
    [[ "$(job_field "$id" ExitCode)" == 0:0 ]] || fail "job $id: ExitCode $(job_field "$id" ExitCode)"
    at_exit="$(sed -n 's/.*"cpus_allowed": *"\([^"]*\)".*/\1/p' "$dir/stats-$i.json" | tr '\n' ' ')"
    if [[ "$at_exit" == "${job_cpus[i]} ${job_cpus[i]} " ]]; then
      pass "job $id: --stats-json at exit: both vCPUs allowed CPUs ${job_cpus[i]} only"
    else
      fail "job $id: --stats-json cpus_allowed '$at_exit', job bound to '${job_cpus[i]}'"
    fi
  done
fi

# ---- 3. scancel stops the VM cleanly -------------------------------------------------
base="$dir/base.raw"
dd if=/dev/urandom of="$base" bs=1M count=16 status=none
sum_before="$(sha256sum <"$base")"
id="$(TMPDIR="$dir/overlays" submit -- "${vm[@]}" --disk "path=$base,snapshot=on" \
  --cmdline "job=blk-bench disk=0 pattern=randwrite seconds=600")"
# Running once kiln holds its overlay: an unlinked file in $TMPDIR.
overlay_open() {
  local pid fd
  pid="$(job_var "$id" pid 2>/dev/null)"
  [[ -n "$pid" ]] || return 1
  for fd in "/proc/$pid/fd"/*; do
    [[ "$(readlink "$fd" 2>/dev/null)" == "$dir/overlays/"* ]] && return 0
  done
  return 1
}
wait_until 60 overlay_open || die "job $id: kiln never opened an overlay in $dir/overlays"
pid="$(job_var "$id" pid)"
sleep 1 # let the guest write into the overlay for a while
# The job's kiln, and seen as this cluster's: the check for leftovers below can see it.
[[ " $(ours is_kiln | tr '\n' ' ') " == *" $pid "* ]] || die "job $id: pid $pid is not kiln or not seen as ours"
start=$SECONDS
scancel "$id"
wait_until $((kill_wait + 30)) job_done "$id" || die "job $id did not end after scancel"
gone() { ! kill -0 "$pid" 2>/dev/null; }
wait_until 10 gone || fail "job $id: kiln (pid $pid) still running after the job ended"
took=$((SECONDS - start))
state="$(job_field "$id" JobState)"
exit_code="$(job_field "$id" ExitCode)"
if [[ "$state" == CANCELLED && "$exit_code" == 143:0 ]] && ((took < kill_wait)) &&
  grep -q '^kiln: stopped by signal Terminated (exit status 143)$' "$dir/jobs/$id.out"; then
  pass "job $id: scancel ended kiln on SIGTERM in ${took}s ($state, ExitCode $exit_code)"
else
  fail "job $id after scancel: $state, ExitCode $exit_code, ${took}s (KillWait ${kill_wait}s); output: $(cat "$dir/jobs/$id.out")"
fi
# kiln hands the VM's last close to a child, kiln-teardown, that exits right after it
# (vmm/machine/deferred_teardown.hpp): give that a moment, not KillWait.
no_kiln() { [[ -z "$(ours is_kiln)" ]]; }
wait_until 5 no_kiln || true
left="$(ours is_kiln)"
expect "no kiln process left" "kiln processes left: $left" test -z "$left"
left="$(ls -A "$dir/overlays")"
expect "overlay directory empty" "left in the overlay directory: $left" test -z "$left"
expect "base image bit-identical" "base image changed" test "$(sha256sum <"$base")" == "$sum_before"

echo "slurm test: $failures failure(s) in ${SECONDS}s"
((failures == 0))
