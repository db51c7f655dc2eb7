#!/bin/bash
# The supervisor of one sandbox; the contract is in _supervisor.py. Usage: supervisor.sh STATE_DIR
# LOCK_FD (started by the client through launch.c, in a session and a private mount namespace of
# its own where the sandbox's root is already mounted on $MERGED; it forks itself away from the
# client at once). Bash, not Python: it starts in a millisecond, and waits with builtins.
set -u
dir=$1 lock=$2  # fd $2: the client's exclusive flock on $dir/net.lock, released once the network is up
# shellcheck source=/dev/null
. "$dir/config.sh"
bw_pid='' init_pid='' net_pid='' agent_pid='' reason='' me=''

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
    for f in $(find "${CGROUP_DIRS[@]}" -name cgroup.procs 2>/dev/null); do
      while read -r p; do any=1; kill -9 "$p" 2>/dev/null; done < "$f"
    done
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
  umount -l "$MERGED" 2>/dev/null
  if mv -T "$dir" "$dir.gone" 2>/dev/null; then rm -rf "$dir.gone"; else rm -rf "$dir"; fi
}

fail() {
  json_string "$1"
  printf '{"error": %s}\n' "$REPLY"
  stop
  exit 1
}

main() {
me=$BASHPID
exec {netlock}<&"$lock" {lock}<&-  # above the fds set up below
trap 'reason=terminated' TERM INT HUP
# Every fifo opened read-write first, so no open below blocks on the other end.
exec {tick}<>"$dir/tick" {hold}<>"$dir/hold" {info}<>"$dir/info" {block}<>"$dir/block" {out}<>"$dir/out"

# bwrap makes the sandbox's namespaces, its user namespace included, and blocks (--userns-block-fd)
# until this supervisor (root outside) has mapped ids 0-65535 inside to $ID_MAP's host ids (never
# host root). It joins the sandbox's cgroups first (in a subshell: no exec) and a cgroup namespace
# made by the host's unshare, so that namespace belongs to the host's user namespace. The sandbox's
# first process says "ready" once bwrap has set everything up, then waits on a pipe only this
# supervisor writes to: when the supervisor dies, it reads EOF and the sandbox ends.
(
  for f in "${CGROUP_PROCS[@]}"; do echo "$BASHPID" > "$f" || exit 125; done
  exec "${CGROUPNS[@]}" "${BWRAP[@]}" --unshare-user --uid 0 --gid 0 --userns-block-fd 6 --info-fd 5 \
    -- /bin/sh -c 'echo ready; read -r x' <"$dir/hold" >"$dir/out" 2>"$dir/bwrap.err" 5>&"$info" 6<"$dir/block" \
    {tick}>&- {hold}>&- {info}>&- {block}>&- {out}>&- {netlock}>&-
) &
bw_pid=$!
started=${EPOCHREALTIME/./}
while [ -z "$init_pid" ]; do
  # bwrap writes its info in pieces: after a timeout, line holds what came (whole writes)
  read -r -t 0.2 -u "$info" line
  if [[ $line =~ \"child-pid\":\ *([0-9]+) ]]; then
    init_pid=${BASH_REMATCH[1]}
  elif ! kill -0 "$bw_pid" 2>/dev/null || ((${EPOCHREALTIME/./} - started > 30000000)); then
    fail "bwrap did not start the sandbox: $(tail -c 500 "$dir/bwrap.err" 2>/dev/null)"
  fi
done
exec {ready}<"$dir/out" {out}>&- {info}>&-  # bwrap holds the write end now: EOF when it dies
{ printf '%s\n' "$ID_MAP" > "/proc/$init_pid/uid_map" && printf '%s\n' "$ID_MAP" > "/proc/$init_pid/gid_map"; } 2>/dev/null \
  || fail "cannot map the sandbox's user namespace (is user.max_user_namespaces 0?)"
printf 1 >&"$block"
exec {block}>&-

if ! read -r -t 30 -u "$ready" line || [ "$line" != ready ]; then
  fail "bwrap did not start the sandbox: $(tail -c 500 "$dir/bwrap.err" 2>/dev/null)"
fi
# The command agent and the user-mode network (bwrap must have configured the loopback device
# first) start now; a command waits for both (a shared flock on net.lock), create does not.
# (a subshell that resets SIGINT and SIGQUIT: bash ignores both in a plain background command, and
# the agent's commands would inherit that, so Ctrl-C on a terminal or kill -INT would do nothing)
(trap - INT QUIT; exec "$AGENT" "$init_pid" "$dir/agent.sock" 6) 6>"$dir/agent.ready" </dev/null >/dev/null \
  2>"$dir/agent.err" {tick}>&- {hold}>&- {ready}>&- {netlock}>&- &
agent_pid=$!
if [ "${#NET[@]}" -gt 0 ]; then
  net=("${NET[@]//\{pid\}/$init_pid}")
  "${net[0]}" --ready-fd 6 "${net[@]:1}" 6>"$dir/net.ready" </dev/null >/dev/null 2>"$dir/net.err" \
    {tick}>&- {hold}>&- {ready}>&- {netlock}>&- &
  net_pid=$!
fi

starttime "$me"; sup_start=$REPLY
starttime "$init_pid"; init_start=$REPLY
state="{\"supervisor_pid\": $me, \"supervisor_start\": \"$sup_start\", \"init_pid\": $init_pid, \"init_start\": \"$init_start\"}"
printf '%s' "$state" > "$dir/ready.json"  # one small write; a reader that sees it empty waits
printf '{"ok": %s}\n' "$state"
exec >/dev/null
exec {agentready}<"$dir/agent.ready"
read -r -t 30 -n 1 -u "$agentready" x || x=''
exec {agentready}<&-
if [ "$x" != 1 ] && [ -z "$reason" ]; then
  reason=agent  # ends the sandbox; a command waiting for it finds it gone
  echo "the command agent did not start: $(tail -c 500 "$dir/agent.err" 2>/dev/null)" >&2
fi
if [ -n "$net_pid" ]; then
  exec {netready}<"$dir/net.ready"
  read -r -t 30 -n 1 -u "$netready" x || x=''
  if [ "$x" != 1 ] && [ -z "$reason" ]; then
    reason=network  # ends the sandbox; a command waiting for the network finds it gone
    echo "the user-mode network (${NET[0]}) did not start: $(tail -c 500 "$dir/net.err" 2>/dev/null)" >&2
  fi
fi
exec {netlock}>&-

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
  now=${EPOCHREALTIME/./}
  if ((now >= deadline)); then reason=expired; break; fi
  if ! kill -0 "$bw_pid" 2>/dev/null; then reason=stopped; break; fi
  if ((IDLE_US > 0)); then
    if busy; then last_busy=$now; elif ((now - last_busy >= IDLE_US)); then reason=idle; break; fi
  fi
  # one sleep until the deadline (or the next idle check): bwrap's end and SIGTERM wake the wait
  step=3600000000
  ((IDLE_US > 0)) && step=500000
  ((deadline - now < step)) && step=$((deadline - now))
  printf -v frac '%06d' $((step % 1000000))
  sleep "$((step / 1000000)).$frac" &
  nap_pid=$!
  wait -n "$nap_pid" "$bw_pid" 2>/dev/null  # returns at once on SIGTERM (the trap sets reason)
  kill "$nap_pid" 2>/dev/null
done
echo "$reason" > "$dir/ended"
stop
}

main &  # detached from the client: its process exits now, the supervisor runs on
