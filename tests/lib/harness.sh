# shellcheck shell=bash
# membal integration test harness. Source it from a test script:
#
#   . "$MEMBAL_SOURCE_DIR/tests/lib/harness.sh"
#   mb_xenstored_start
#   mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
#   PluginDir "$MB_PLUGINDIR"
#   LoadPlugin guestmem
#   <Plugin guestmem> ... </Plugin>
#   EOF
#   mb_collectd_start "$MB_DIR/collectd.conf"
#   mb_wait_for 5 mb_collectdctl getval membal-test/guestmem/memory-MemTotal
#
# Every test gets a private directory ($MB_DIR) holding its xenstored
# (socket, logs), collectd (BaseDir, unixsock socket, log) and whatever else
# it writes, so tests run in parallel. An EXIT trap kills every process the
# test started (by pid) and removes the directory (kept when MEMBAL_KEEP=1 or
# the test failed and MEMBAL_KEEP_FAILED=1). A sanitizer report in any
# collectd log fails the test even if its assertions passed.
#
# Real components only: /usr/lib/xen-4.17/bin/xenstored (with the xsshim
# LD_PRELOAD library standing in for the hypervisor), /usr/sbin/collectd,
# collectdctl, the xenstore-* tools.
#
# Environment: MEMBAL_SOURCE_DIR, MEMBAL_BUILD_DIR (set by ctest; defaulted
# from this file's location and build/test otherwise).

set -euo pipefail

MEMBAL_SOURCE_DIR=${MEMBAL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
MEMBAL_BUILD_DIR=${MEMBAL_BUILD_DIR:-$MEMBAL_SOURCE_DIR/build/test}
export MEMBAL_SOURCE_DIR MEMBAL_BUILD_DIR

MB_XENSTORED_BIN=${MB_XENSTORED_BIN:-/usr/lib/xen-4.17/bin/xenstored}
MB_COLLECTD_BIN=${MB_COLLECTD_BIN:-/usr/sbin/collectd}
MB_STOCK_PLUGINDIR=${MB_STOCK_PLUGINDIR:-/usr/lib/collectd}
MB_PLUGINDIR=${MB_PLUGINDIR:-$MEMBAL_BUILD_DIR/plugins}
MB_SHIM=${MB_SHIM:-$MEMBAL_BUILD_DIR/tests/lib/xsshim.so}
# Stock types only: membal needs no types.db of its own (plugins/SCHEMA.md).
MB_TYPESDB="\"/usr/share/collectd/types.db\""
MB_HOSTNAME=${MB_HOSTNAME:-membal-test}
MB_TEST_NAME=${MB_TEST_NAME:-$(basename "${0%.sh}")}

MB_DIR=""
MB_XS_PID=""
MB_CD_PID=""
MB_CD_DIR=""
MB_CD_SOCK=""
MB_CD_LOG=""
MB_PIDS=()   # extra background processes a test registered (mb_bg)
# Daemons get SIGTERM when the test shell dies, even by SIGKILL (ctest's
# timeout), so that nothing outlives a test.
MB_DEATHSIG=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
  MB_DEATHSIG=(setpriv --pdeathsig TERM)
fi
MB_SAN_LOGS=() # files scanned for sanitizer reports at exit

mb_log() { printf '[%s %s] %s\n' "$MB_TEST_NAME" "$(date +%H:%M:%S.%N | cut -c1-12)" "$*" >&2; }

mb_skip() {
  mb_log "SKIP: $*"
  exit 77
}

# Print the tail of every log this test produced (for failure diagnosis).
mb_dump_logs() {
  local f
  for f in "${MB_CD_LOG:-}" "${MB_CD_DIR:+$MB_CD_DIR/collectd.stderr}" \
    "${MB_DIR:+$MB_DIR/xenstored/xenstored.log}"; do
    [ -n "$f" ] && [ -s "$f" ] || continue
    echo "----- tail of $f -----" >&2
    tail -n 40 "$f" >&2
  done
}

mb_fail() {
  mb_log "FAIL: $*"
  mb_dump_logs
  exit 1
}

# mb_assert_eq <expected> <actual> <what>
mb_assert_eq() {
  if [ "$1" != "$2" ]; then
    mb_fail "$3: expected '$1', got '$2'"
  fi
  mb_log "ok: $3 = '$2'"
}

# mb_assert <what> <command...>: the command must succeed.
mb_assert() {
  local what=$1
  shift
  "$@" || mb_fail "$what (command: $*)"
  mb_log "ok: $what"
}

# mb_wait_for <timeout_s> <command...>: poll every 0.1 s until the command
# succeeds (at least once, even after the deadline); returns 1 on timeout.
mb_wait_for() {
  local timeout=$1
  shift
  local deadline ms
  ms=$(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000 }') # "0.5" works too
  deadline=$(($(date +%s%N) + ms * 1000000))
  while :; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [ "$(date +%s%N)" -ge "$deadline" ]; then
      return 1
    fi
    sleep 0.1
  done
}

# mb_wait_progress <stall_s> <progress_cmd> <command...>: poll every 0.2 s
# until the command succeeds. Fails when the output of progress_cmd (for
# example the number of lines an emulated guest printed) has not changed for
# stall_s seconds, or after 20 x stall_s in all: it waits on the progress
# of what it waits for, not on how fast this machine is.
mb_wait_progress() {
  local stall=$1 prog=$2
  shift 2
  local last cur now changed end
  last=$(eval "$prog" 2>/dev/null)
  changed=$(date +%s%N)
  end=$((changed + stall * 20 * 1000000000))
  while :; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    now=$(date +%s%N)
    cur=$(eval "$prog" 2>/dev/null)
    if [ "$cur" != "$last" ]; then
      last=$cur
      changed=$now
    fi
    [ $((now - changed)) -lt $((stall * 1000000000)) ] || return 1
    [ "$now" -lt "$end" ] || return 1
    sleep 0.2
  done
}

# Milliseconds since the epoch (for latency measurements).
mb_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# mb_tmpdir: create the test's private directory (done when this file is
# sourced; calling it again is a no-op). Sets MB_DIR.
mb_tmpdir() {
  if [ -z "$MB_DIR" ]; then
    MB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mb-${MB_TEST_NAME:0:20}.XXXXXX")
  fi
  echo "$MB_DIR"
}

# mb_bg <logfile> <command...>: start a helper process in the background;
# it is killed at exit. Sets MB_LAST_PID.
mb_bg() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  MB_LAST_PID=$!
  MB_PIDS+=("$MB_LAST_PID")
}

# Kill one process by pid (TERM, then KILL after 5 s) and reap it.
mb__kill() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null || true
    return 0
  }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    mb_log "pid $pid ignored SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# Sanitizer reports (ASan, UBSan, LSan) in a file. Prints them.
mb__san_report() {
  local f=$1
  [ -s "$f" ] || return 1
  grep -E -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$f"
}

mb_check_sanitizers() {
  local f bad=0
  for f in "${MB_SAN_LOGS[@]}"; do
    if mb__san_report "$f" >&2; then
      mb_log "sanitizer report in $f"
      bad=1
    fi
  done
  return $bad
}

mb__cleanup() {
  local rc=$?
  set +e
  local p
  for p in "${MB_PIDS[@]}"; do mb__kill "$p"; done
  mb__kill "$MB_CD_PID"
  mb__kill "$MB_XS_PID"
  if ! mb_check_sanitizers; then
    [ "$rc" -eq 0 ] && rc=1
  fi
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    mb_log "test failed (exit $rc); dir $MB_DIR"
  fi
  if [ -n "$MB_DIR" ] && [ -d "$MB_DIR" ]; then
    if [ "${MEMBAL_KEEP:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ "${MEMBAL_KEEP_FAILED:-0}" = 1 ]; }; then
      mb_log "kept $MB_DIR"
    else
      rm -rf "$MB_DIR"
    fi
  fi
  exit "$rc"
}
trap mb__cleanup EXIT
trap 'exit 130' INT TERM

# A command that stops the test through set -e says which, and where
# (otherwise only "test failed (exit 1)" is logged). The same conditions as
# set -e: a command tested by if, while, && or || never triggers it.
set -E
mb__on_err() {
  local rc=$1 cmd=$2 i where=""
  # only where set -e is on and stops the test (not in a subshell)
  [[ $- == *e* ]] && [ "$BASH_SUBSHELL" -eq 0 ] || return 0
  for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
    where+=" ${FUNCNAME[$i]}@${BASH_SOURCE[$i]##*/}:${BASH_LINENO[$((i - 1))]}"
  done
  mb_log "command failed (exit $rc): $cmd; at$where"
}
trap 'mb__on_err $? "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- xenstored

# mb_xenstored_start: start a private xenstored and point every xenstore
# client of this test at it (exports XENSTORED_PATH). MB_XENSTORED_TRACE=1:
# xenstored traces every request and reply to $MB_XS_DIR/trace (-T), so a
# test can see a client's requests (e.g. when a watch was registered).
mb_xenstored_start() {
  [ -x "$MB_XENSTORED_BIN" ] || mb_skip "$MB_XENSTORED_BIN missing (apt-get install xen-utils-4.17)"
  command -v xenstore-write >/dev/null || mb_skip "xenstore-utils missing"
  [ -f "$MB_SHIM" ] || mb_fail "$MB_SHIM not built (cmake --build $MEMBAL_BUILD_DIR)"
  local d=$MB_DIR/xenstored
  mkdir -p "$d"
  rm -f "$d/socket"
  # xenstored binds $XENSTORED_PATH when set: keep a client setting (maybe
  # another xenstored's socket) away from it.
  local -a trace=()
  [ "${MB_XENSTORED_TRACE:-0}" != 1 ] || trace=(-T "$d/trace")
  "${MB_DEATHSIG[@]}" env -u XENSTORED_PATH XENSTORED_RUNDIR="$d" \
    LD_PRELOAD="$MB_SHIM" "$MB_XENSTORED_BIN" -N "${trace[@]}" >>"$d/xenstored.log" 2>&1 &
  MB_XS_PID=$!
  export XENSTORED_PATH=$d/socket
  export MB_XS_DIR=$d
  if ! mb_wait_for 10 xenstore-exists /; then
    mb_fail "xenstored did not come up (pid $MB_XS_PID)"
  fi
  # What a toolstack creates before any guest exists.
  xenstore-write /local/domain/0/name Domain-0 /local/domain/0/domid 0
  mb_log "xenstored pid $MB_XS_PID at $XENSTORED_PATH"
}

mb_xenstored_stop() {
  mb__kill "$MB_XS_PID"
  MB_XS_PID=""
}

# The store lives in xenstored's memory: a restart starts from an empty
# store, as after a crash of a real one. Re-create what the test needs.
mb_xenstored_restart() {
  mb_xenstored_stop
  mb_xenstored_start
}

# mb_guest_domain <domid> [name]: create /local/domain/<domid> the way libxl
# does for a new guest: the domain directory owned by dom0 and readable by
# the guest, data/ owned (so writable) by the guest, memory/ dom0-owned and
# readable by the guest.
#
# xenstored treats every unix-socket client as dom0, so to act AS the guest
# use mb_guest_proxy_start: it speaks to xenstored through a ring page like
# a guest kernel, and xenstored applies the guest's permissions and
# resolves relative paths against /local/domain/<domid>.
mb_guest_domain() {
  local id=$1 name=${2:-guest$1}
  local p=/local/domain/$id
  xenstore-write "$p/name" "$name" "$p/domid" "$id" \
    "$p/memory/target" 0 "$p/data" ""
  xenstore-chmod "$p" n0 "r$id"
  xenstore-chmod "$p/name" n0 "r$id"
  xenstore-chmod "$p/domid" n0 "r$id"
  xenstore-chmod "$p/memory" n0 "r$id"
  xenstore-chmod "$p/memory/target" n0 "r$id"
  xenstore-chmod "$p/data" "n$id"
}

MB_GUEST_PROXY=${MB_GUEST_PROXY:-$MEMBAL_BUILD_DIR/tests/lib/xs-guest-proxy}

# mb_guest_proxy_start <domid>: introduce domain <domid> to the test's
# xenstored and set MB_GUEST_SOCK (also: mb_guest_sock <domid>); a client
# with XENSTORED_PATH=<that path> (xenstore-* tools, libxenstore, guestmem)
# is that guest. The proxy re-introduces the domain by itself after
# mb_xenstored_restart (its client sees the connection drop, as dom0
# clients do) and is killed at exit. Call it directly, not in $(...): the
# pid must be recorded in this shell.
mb_guest_sock() { echo "$MB_DIR/guest$1.sock"; }
mb_guest_proxy_start() {
  local id=$1
  local sock
  sock=$(mb_guest_sock "$id")
  [ -x "$MB_GUEST_PROXY" ] || mb_fail "$MB_GUEST_PROXY not built"
  [ -n "${MB_XS_DIR:-}" ] || mb_fail "mb_guest_proxy_start: start xenstored first"
  mb_bg "$MB_DIR/guest$id.proxy.log" env XENSTORED_RUNDIR="$MB_XS_DIR" \
    XENSTORED_PATH="$MB_XS_DIR/socket" "$MB_GUEST_PROXY" "$id" "$sock"
  mb_wait_for 10 test -S "$sock" || mb_fail "guest proxy for domain $id did not start: $(cat "$MB_DIR/guest$id.proxy.log")"
  MB_GUEST_SOCK=$sock
}

# mb_as_guest <socket> <command...>: run a xenstore client as that guest.
mb_as_guest() {
  local sock=$1
  shift
  XENSTORED_PATH=$sock "$@"
}

# ----------------------------------------------------------------- collectd

# mb_collectd_conf <file>: write a collectd.conf whose header sets up a
# private BaseDir, logfile, unixsock and collectd's stock TypesDB; the test's own
# lines are read from stdin and appended. Stock plugins load from
# MB_STOCK_PLUGINDIR; to load ours, put `PluginDir "$MB_PLUGINDIR"` before
# their LoadPlugin (PluginDir only affects later LoadPlugin lines).
# MB_INTERVAL (default 1) is the global Interval.
mb_collectd_conf() {
  local out=$1
  local d=$MB_DIR/collectd
  mkdir -p "$d"
  {
    cat <<EOF
# generated by tests/lib/harness.sh for $MB_TEST_NAME
Hostname "$MB_HOSTNAME"
FQDNLookup false
BaseDir "$d"
PIDFile "$d/collectd.pid"
TypesDB $MB_TYPESDB
Interval ${MB_INTERVAL:-1}
PluginDir "$MB_STOCK_PLUGINDIR"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$d/collectd.log"
  Timestamp true
  PrintSeverity true
</Plugin>
LoadPlugin unixsock
<Plugin unixsock>
  SocketFile "$d/collectd.sock"
  SocketPerms "0600"
</Plugin>
EOF
    cat
  } >"$out"
}

# True when our plugins were built with AddressSanitizer.
mb__plugins_asan() {
  local so
  for so in "$MB_PLUGINDIR"/*.so; do
    [ -e "$so" ] || continue
    # not "ldd | grep -q": with pipefail, grep's early exit fails ldd
    case "$(ldd "$so" 2>/dev/null)" in *libasan*) return 0 ;; esac
  done
  return 1
}

# mb_collectd_start <conf>: run the real collectd in the foreground (in the
# background of this shell) and wait until its unixsock answers.
# MB_COLLECTD_WRAPPER: a command prefixed to collectd (e.g. valgrind),
# ignored when the plugins are ASan-built; MB_COLLECTD_START_TIMEOUT (s,
# default 15): how long to wait for the socket.
mb_collectd_start() {
  local conf=$1
  [ -x "$MB_COLLECTD_BIN" ] || mb_skip "$MB_COLLECTD_BIN missing (apt-get install collectd-core)"
  command -v collectdctl >/dev/null || mb_skip "collectdctl missing (apt-get install collectd-utils)"
  MB_CD_DIR=$MB_DIR/collectd
  MB_CD_SOCK=$MB_CD_DIR/collectd.sock
  MB_CD_LOG=$MB_CD_DIR/collectd.log
  mkdir -p "$MB_CD_DIR"
  # MB_KEEP_STALE_SOCKET=1: leave a socket file a killed collectd left
  # (tests of unixsock's DeleteSocket)
  [ "${MB_KEEP_STALE_SOCKET:-0}" = 1 ] || rm -f "$MB_CD_SOCK"
  "$MB_COLLECTD_BIN" -t -C "$conf" >"$MB_CD_DIR/configtest.out" 2>&1 ||
    mb_fail "collectd -t rejected $conf: $(cat "$MB_CD_DIR/configtest.out")"
  local -a env=() wrapper=()
  if mb__plugins_asan; then
    env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
  elif [ -n "${MB_COLLECTD_WRAPPER:-}" ]; then
    # e.g. "valgrind --log-file=..." (word-split, no quoting); valgrind
    # cannot run ASan-built plugins, hence only without them.
    read -r -a wrapper <<<"$MB_COLLECTD_WRAPPER"
  fi
  "${MB_DEATHSIG[@]}" env "${env[@]}" "${wrapper[@]}" "$MB_COLLECTD_BIN" -f -C "$conf" \
    >>"$MB_CD_DIR/collectd.stderr" 2>&1 &
  MB_CD_PID=$!
  MB_SAN_LOGS+=("$MB_CD_DIR/collectd.stderr" "$MB_CD_LOG")
  # Up, or no progress (neither its logs nor its CPU time moved) for
  # MB_COLLECTD_START_TIMEOUT s: a loaded machine only makes it slower.
  mb_wait_progress "${MB_COLLECTD_START_TIMEOUT:-15}" mb__collectd_progress mb__collectd_up ||
    mb_fail "collectd did not come up (pid $MB_CD_PID; no progress for ${MB_COLLECTD_START_TIMEOUT:-15} s)"
  mb_collectd_alive || mb_fail "collectd exited at start (see its log)"
  mb_log "collectd pid $MB_CD_PID, socket $MB_CD_SOCK"
}

# What a starting collectd has done: its logs' size and its CPU time.
mb__collectd_progress() {
  cat "$MB_CD_LOG" "$MB_CD_DIR/collectd.stderr" 2>/dev/null | wc -c
  awk '{ print $14 + $15 }' "/proc/$MB_CD_PID/stat" 2>/dev/null
}

# Up (socket answers) or dead: both end the wait at start.
mb__collectd_up() {
  mb_collectd_alive || return 0
  collectdctl -s "$MB_CD_SOCK" listval
}

# mb_collectd_refuses <conf> <regex>: collectd must refuse to start with
# this configuration (exit non-zero within 15 s) and say why (regex matched
# in its output). Output kept in $MB_DIR/refused.<n>.out.
MB_REFUSALS=0
mb_collectd_refuses() {
  local conf=$1 re=$2 rc=0 out
  MB_REFUSALS=$((MB_REFUSALS + 1))
  out=$MB_DIR/refused.$MB_REFUSALS.out
  local -a env=()
  mb__plugins_asan && env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1)
  # the reason goes to the configured logfile once that is loaded
  rm -f "$MB_DIR/collectd/collectd.log"
  env "${env[@]}" timeout 15 "$MB_COLLECTD_BIN" -f -C "$conf" >"$out" 2>&1 || rc=$?
  cat "$MB_DIR/collectd/collectd.log" >>"$out" 2>/dev/null || true
  MB_SAN_LOGS+=("$out")
  [ "$rc" -ne 0 ] || mb_fail "collectd accepted $conf: $(cat "$out")"
  [ "$rc" -ne 124 ] || mb_fail "collectd kept running with $conf"
  grep -Eq -- "$re" "$out" || mb_fail "collectd refused $conf but did not say '$re': $(cat "$out")"
  mb_log "ok: collectd refused the configuration: $(grep -E -- "$re" "$out" | head -n1)"
}

mb_collectd_stop() {
  mb__kill "$MB_CD_PID"
  MB_CD_PID=""
}

mb_collectd_alive() { [ -n "$MB_CD_PID" ] && kill -0 "$MB_CD_PID" 2>/dev/null; }

mb_collectdctl() { collectdctl -s "$MB_CD_SOCK" "$@"; }

# mb_getval <identifier> [name]: print the value of one data source (default
# "value") from collectdctl getval; fails when absent.
mb_getval() {
  local out
  out=$(mb_collectdctl getval "$1" 2>/dev/null) || return 1
  printf '%s\n' "$out" | sed -n "s/^${2:-value}=//p" | grep .
}

# mb_log_has <regex>: the collectd log holds a matching line.
mb_log_has() { grep -Eq -- "$1" "$MB_CD_LOG" 2>/dev/null; }

# mb_valtime <identifier>: the time (s since the epoch) of the identifier's
# latest value in collectd's cache (unixsock LISTVAL; collectdctl listval
# prints no times); fails when absent. A value's time moves with every
# dispatch, so it is how a test sees a plugin's reads go on. Polled often:
# the system's python3 without site packages starts in a few ms, a pyenv
# shim on PATH takes a second on a loaded machine.
MB_PYTHON=${MB_PYTHON:-$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)}
mb_valtime() {
  "$MB_PYTHON" -S - "$MB_CD_SOCK" "$1" <<'PYEOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"LISTVAL\n")
f = s.makefile("r")
n = int(f.readline().split(" ", 1)[0])
for _ in range(max(n, 0)):
    t, ident = f.readline().rstrip("\n").split(" ", 1)
    if ident == sys.argv[2]:
        print(t)
        sys.exit(0)
sys.exit(1)
PYEOF
}

# mb_wait_dispatches <n> <identifier> [timeout_s]: wait until the
# identifier's value was dispatched n more times (its time in collectd's
# cache changed n times); 60 s at most unless given. The progress a
# negative check waits on ("n more reads and still nothing happened")
# instead of a duration that a slow machine may not fill with reads.
mb_wait_dispatches() {
  local n=$1 id=$2 timeout=${3:-60} seen=0 last cur
  local deadline=$(($(date +%s%N) + timeout * 1000000000))
  last=$(mb_valtime "$id" 2>/dev/null || echo none)
  while [ "$seen" -lt "$n" ]; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.1
    cur=$(mb_valtime "$id" 2>/dev/null || echo none)
    if [ "$cur" != "$last" ]; then
      [ "$cur" = none ] || seen=$((seen + 1))
      last=$cur
    fi
  done
}

# mb_conf_ticks <conf>: add collectd's stock uptime plugin to a
# configuration written by mb_collectd_conf: a read callback of the global
# interval whose value (uptime/uptime) shows collectd's reads going on when
# the plugin under test dispatches nothing (files rejected, no xenstored).
mb_conf_ticks() {
  printf 'PluginDir "%s"\nLoadPlugin uptime\n' "$MB_STOCK_PLUGINDIR" >>"$1"
}

# mb_wait_ticks <n>: collectd ran n more read intervals (mb_conf_ticks'
# uptime value dispatched n more times); 60 s at most.
mb_wait_ticks() {
  mb_wait_dispatches "$1" "$MB_HOSTNAME/uptime/uptime" ||
    mb_fail "collectd's reads did not go on: uptime not dispatched $1 more times within 60 s"
}

# mb__not_older <identifier> <time>: the identifier's value in collectd's
# cache is stamped at <time> or later.
mb__not_older() {
  local t
  t=$(mb_valtime "$1") || return 1
  awk -v a="$t" -v b="$2" 'BEGIN { exit !(a >= b) }'
}

# mb_wait_same_dispatch <ref_identifier> <identifier...>: wait (30 s at
# most each) until every identifier's value in collectd's cache is stamped
# no earlier than the ref's: for values a plugin dispatches together with
# one time stamp. collectd's write threads update the cache, so when the
# ref's new value is there, another value of the same dispatch may still
# be in flight.
mb_wait_same_dispatch() {
  local ref=$1 t id
  shift
  mb_wait_for 30 mb_valtime "$ref" || mb_fail "$ref is not in collectd's cache"
  t=$(mb_valtime "$ref") || mb_fail "$ref is not in collectd's cache"
  for id in "$@"; do
    mb_wait_for 30 mb__not_older "$id" "$t" ||
      mb_fail "$id: no value as new as $ref's ($t) in collectd's cache (has $(mb_valtime "$id" 2>/dev/null || echo none))"
  done
}

mb_tmpdir >/dev/null
