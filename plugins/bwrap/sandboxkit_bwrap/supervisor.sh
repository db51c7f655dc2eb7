#!/bin/bash
# The supervisor of one sandbox; the contract is in _supervisor.py. Usage: supervisor.sh STATE_DIR
# CONFIG_FD LOCK_FD PIPE_FD... (started by the client through launch.c, in a session and a private
# mount namespace of its own where the sandbox's root is already mounted on $MNT; it forks itself
# away from the client at once). Bash, not Python: it starts in a millisecond, and waits with builtins.
set -u
dir=$1 cfg=$2 lock=$3  # fd $3: the client's exclusive flock on $dir, released once the agent is up
# shellcheck source=/dev/null
. "/dev/fd/$cfg"
bw_pid='' nap_pid='' init_pid='' children='' net_pid='' agent_pid='' reason='' me='' start_wanted='' started=''

starttime() {  # REPLY = field 22 of /proc/PID/stat; empty when gone or a zombie
  local stat
  REPLY=''
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 0
  # shellcheck disable=SC2086
  set -- ${stat##*) }
  [ "$1" = Z ] || [ "$1" = X ] || REPLY=${20}
}

nap() { read -r -t "$1" -u "$tick" _ 2>/dev/null; true; }  # a sleep without a fork

json_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  REPLY="\"${s//[$'\n\r\t']/ }\""
}

kill_cgroups() {  # SIGKILL every process in the sandbox's cgroups until none is left (bounded)
  local i f p any
  for ((i = 0; i < 200; i++)); do
    any=''
    for f in "${CGROUP_DIRS[@]}"; do  # cgroup v2 (5.14+): the kernel kills the whole tree at once
      [ -f "$f/cgroup.kill" ] && echo 1 2>/dev/null > "$f/cgroup.kill"
    done
    while read -r f; do
      while read -r p; do any=1; kill -9 "$p" 2>/dev/null; done < "$f"
    done < <(find "${CGROUP_DIRS[@]}" -name cgroup.procs 2>/dev/null)
    [ -z "$any" ] && return
    nap 0.01
  done
}

stop() {
  if [ -n "$init_pid" ]; then
    kill -9 "$init_pid" 2>/dev/null  # ends its whole pid namespace; bwrap reaps it and exits
    for ((i = 0; i < 500; i++)); do starttime "$bw_pid"; [ -z "$REPLY" ] && break; nap 0.01; done
  fi
  kill_cgroups
  [ -n "$bw_pid" ] && kill -9 "$bw_pid" 2>/dev/null
  [ -n "$net_pid" ] && kill -9 "$net_pid" 2>/dev/null
  [ -n "$agent_pid" ] && kill -9 "$agent_pid" 2>/dev/null
  wait 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    find "${CGROUP_DIRS[@]}" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -z "$(find "${CGROUP_DIRS[@]}" -maxdepth 0 2>/dev/null)" ] && break
    nap 0.02
  done
  if mv -T "$dir" "$dir.gone" 2>/dev/null; then rm -rf "$dir.gone"; else rm -rf "$dir"; fi
}

fail() {
  json_string "$1"
  printf '{"error": %s}\n' "$REPLY"
  stop
  exit 1
}

log_tail() { REPLY=$(tail -c 500 "$dir/supervisor.log" 2>/dev/null); }

start_commands() {  # the command agent and the user-mode network, on the first command's request
  local x
  started=1
  # bwrap configured the loopback device long ago; a command waits for both (the flock on $dir)
  # (a subshell that resets SIGINT and SIGQUIT: bash ignores both in a background command, and the
  # agent's commands would inherit that, so Ctrl-C on a terminal or kill -INT would do nothing)
  (trap - INT QUIT; exec "$AGENT" "$init_pid" "$dir/agent.sock" 6 "$SECCOMP") 6>&"$agent_w" </dev/null >/dev/null \
    {tick}<&- {tick_w}>&- {hold_w}>&- {info_r}<&- {ready}<&- {lock}<&- {agent_r}<&- {agent_w}>&- {net_r}<&- {net_w}>&- &
  agent_pid=$!
  if [ "${#NET[@]}" -gt 0 ]; then
    local net=("${NET[@]//\{pid\}/$init_pid}")
    "${net[0]}" --ready-fd 6 "${net[@]:1}" 6>&"$net_w" </dev/null >/dev/null \
      {tick}<&- {tick_w}>&- {hold_w}>&- {info_r}<&- {ready}<&- {lock}<&- {agent_r}<&- {agent_w}>&- {net_r}<&- {net_w}>&- &
    net_pid=$!
  fi
  exec {agent_w}>&- {net_w}>&-  # EOF on a ready pipe when its process dies before it is up
  read -r -t 30 -n 1 -u "$agent_r" x || x=''
  if [ "$x" != 1 ] && [ -z "$reason" ]; then
    reason=agent  # ends the sandbox; a command waiting for it finds it gone
    log_tail
    echo "the command agent did not start: $REPLY" >&2
  fi
  if [ -n "$net_pid" ]; then
    read -r -t 30 -n 1 -u "$net_r" x || x=''
    if [ "$x" != 1 ] && [ -z "$reason" ]; then
      reason=network  # ends the sandbox; a command waiting for the network finds it gone
      log_tail
      echo "the user-mode network (${NET[0]}) did not start: $REPLY" >&2
    fi
  fi
  exec {agent_r}<&- {net_r}<&- {lock}<&-  # commands may run now (or find the sandbox ended)
}

main() {
me=$BASHPID
wake() { [ -n "$nap_pid" ] && kill "$nap_pid" 2>/dev/null; true; }  # ends the main loop's wait
trap 'reason=terminated; wake' TERM INT HUP
trap 'start_wanted=1; wake' USR1  # a client's first command: start the agent and the network
# The pipes the client made, at fds above those set up below: PID 1's stdin (its write end kept
# here: PID 1 reads EOF when the supervisor dies), bwrap's info and userns-block fds, PID 1's
# stdout, the agent's and the network's ready fds, and a pipe only this supervisor holds (naps).
shift 3
local fds=() fd
for fd in "$@"; do exec {REPLY}<&"$fd" {fd}<&-; fds+=("$REPLY"); done
exec {cfg}<&- {REPLY}<&"$lock" {lock}<&-
lock=$REPLY
tick=${fds[0]} tick_w=${fds[1]} hold_r=${fds[2]} hold_w=${fds[3]} info_r=${fds[4]} info_w=${fds[5]}
block_r=${fds[6]} block_w=${fds[7]} out_r=${fds[8]} out_w=${fds[9]} agent_r=${fds[10]} agent_w=${fds[11]}
net_r=${fds[12]} net_w=${fds[13]}
ready=$out_r

# bwrap makes the sandbox's namespaces, its user namespace included, and blocks (--userns-block-fd)
# until this supervisor (root outside) has mapped ids 0-65535 inside to $ID_MAP's host ids (never
# host root). The sandbox's first process says "ready" once bwrap has set everything up, then
# waits on a pipe only this supervisor writes to: when the supervisor dies, it reads EOF and the
# sandbox ends. It joins the sandbox's cgroups once create has returned (below): a first write to
# cgroup.procs waits for an RCU grace period, which create does not pay for.
"${AS_SHIFTED_ROOT[@]}" "${BWRAP[@]}" --unshare-user --uid 0 --gid 0 --userns-block-fd 6 --info-fd 5 --seccomp 7 \
  -- /bin/sh -c 'echo ready; read -r x' <&"$hold_r" >&"$out_w" 5>&"$info_w" 6<&"$block_r" 7<"$SECCOMP" \
  {tick}<&- {tick_w}>&- {hold_r}<&- {hold_w}>&- {info_r}<&- {info_w}>&- {block_r}<&- {block_w}>&- \
  {out_r}<&- {out_w}>&- {agent_r}<&- {agent_w}>&- {net_r}<&- {net_w}>&- {lock}<&- &
bw_pid=$!
exec {hold_r}<&- {info_w}>&- {block_r}<&- {out_w}>&-  # bwrap holds them now: EOF when it dies
started_us=${EPOCHREALTIME/./}
while [ -z "$init_pid" ]; do
  # bwrap writes its info in pieces: after a timeout, line holds what came (whole writes)
  read -r -t 0.2 -u "$info_r" line
  if [[ $line =~ \"child-pid\":\ *([0-9]+) ]]; then
    init_pid=${BASH_REMATCH[1]}
  elif ! kill -0 "$bw_pid" 2>/dev/null || ((${EPOCHREALTIME/./} - started_us > 30000000)); then
    log_tail
    fail "bwrap did not start the sandbox: $REPLY"
  fi
done
# info_r stays open: bwrap writes more info later, and a pipe without a reader would kill it (SIGPIPE)
{ printf '%s\n' "$ID_MAP" > "/proc/$init_pid/uid_map" && printf '%s\n' "$ID_MAP" > "/proc/$init_pid/gid_map"; } 2>/dev/null \
  || fail "cannot map the sandbox's user namespace (is user.max_user_namespaces 0?)"
printf 1 >&"$block_w"
exec {block_w}>&-

if ! read -r -t 30 -u "$ready" line || [ "$line" != ready ]; then
  log_tail
  fail "bwrap did not start the sandbox: $REPLY"
fi

starttime "$me"; sup_start=$REPLY
starttime "$init_pid"; init_start=$REPLY
state="{\"supervisor_pid\": $me, \"supervisor_start\": \"$sup_start\", \"init_pid\": $init_pid, \"init_start\": \"$init_start\"}"
printf '%s' "$state" > "$dir/ready.json"  # one small write; a reader that sees it empty waits
printf '{"ok": %s}\n' "$state"
exec >/dev/null
# Now that create has returned: the sandbox's PID 1 and first process join its cgroups (commands
# join their own). The first of these writes may wait for an RCU grace period; a command coming
# right after create then finds the kernel past it.
read -r children 2>/dev/null < "/proc/$init_pid/task/$init_pid/children"
for p in "$init_pid" $children; do
  for f in "${CGROUP_PROCS[@]}"; do echo "$p" > "$f"; done 2>/dev/null
done

busy() {  # a command still running: its main process is a child of the agent; processes it left
  local d p stat  # in the background (orphans, adopted by the sandbox's PID 1) do not count
  for d in "$CMD_CGROUPS"/cmd-*/; do
    [ -f "$d/cgroup.procs" ] || continue
    while read -r p; do
      read -r stat 2>/dev/null < "/proc/$p/stat" || continue
      # shellcheck disable=SC2086
      set -- ${stat##*) }
      [ "$2" = "$agent_pid" ] && return 0
    done < "$d/cgroup.procs"
  done
  return 1
}

now=${EPOCHREALTIME/./}
deadline=$((now + TIMEOUT_US))
last_busy=$now
while [ -z "$reason" ]; do
  if [ -n "$start_wanted" ] && [ -z "$started" ]; then start_commands; continue; fi
  now=${EPOCHREALTIME/./}
  if ((now >= deadline)); then reason=expired; break; fi
  if ! kill -0 "$bw_pid" 2>/dev/null; then reason=stopped; break; fi
  if ((IDLE_US > 0)); then
    if busy; then last_busy=$now; elif ((now - last_busy >= IDLE_US)); then reason=idle; break; fi
  fi
  # one sleep until the deadline (or the next idle check): bwrap's end, SIGTERM and SIGUSR1 wake the wait
  step=3600000000
  ((IDLE_US > 0)) && step=500000
  ((deadline - now < step)) && step=$((deadline - now))
  printf -v frac '%06d' $((step % 1000000))
  sleep "$((step / 1000000)).$frac" {tick}<&- {tick_w}>&- {hold_w}>&- {info_r}<&- {ready}<&- {lock}<&- \
    {agent_r}<&- {agent_w}>&- {net_r}<&- {net_w}>&- &
  nap_pid=$!
  # a signal trapped before nap_pid was set did not end the sleep: end it here
  if [ -n "$reason" ] || { [ -n "$start_wanted" ] && [ -z "$started" ]; }; then wake; fi
  wait -n "$nap_pid" "$bw_pid" 2>/dev/null  # returns at once on a trapped signal
  wake
  nap_pid=''
done
echo "$reason" > "$dir/ended"
exec {lock}<&-  # a command waiting for the agent finds the sandbox ended (closing it twice is harmless)
stop
}

main "$@" &  # detached from the client: its process exits now, the supervisor runs on
