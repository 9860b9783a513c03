#!/usr/bin/env bash
# The harness itself: a real xenstored runs under the xsshim, answers the
# xenstore tools, delivers watches, enforces what a toolstack sets up for a
# guest, survives a restart, runs side by side with a second instance; a
# real collectd starts with stock plugins and answers collectdctl.
. "$(dirname "$0")/harness.sh"

mb_xenstored_start

# read / write / ls
xenstore-write /test/a/b "hello world"
mb_assert_eq "hello world" "$(xenstore-read /test/a/b)" "xenstore-read after write"
mb_assert "xenstore-ls lists the node" bash -c 'xenstore-ls /test | grep -q "b = \"hello world\""'
mb_assert_eq "Domain-0" "$(xenstore-read /local/domain/0/name)" "dom0 name"

# watches (xs_watch over the unix socket): the watch fires once at
# registration and once per change.
mb_bg "$MB_DIR/watch.out" xenstore-watch -n 3 /test/w
watch_pid=$MB_LAST_PID
mb_wait_for 5 grep -q /test/w "$MB_DIR/watch.out" || mb_fail "initial watch event missing"
xenstore-write /test/w/x 1
xenstore-write /test/w/y 2
mb_wait_for 5 bash -c "! kill -0 $watch_pid" || mb_fail "watch did not see both changes: $(cat "$MB_DIR/watch.out")"
mb_assert "watch saw /test/w/x" grep -qx /test/w/x "$MB_DIR/watch.out"
mb_assert "watch saw /test/w/y" grep -qx /test/w/y "$MB_DIR/watch.out"

# a guest domain laid out like libxl does
mb_guest_domain 7 vm7
perms=$(xenstore-ls -p /local/domain/7 | tr -s ' .' ' ')
mb_assert "data/ owned by domain 7" grep -q 'data = "" (n7)' <<<"$perms"
mb_assert "memory/target dom0-owned, readable by 7" grep -q 'target = "0" (n0,r7)' <<<"$perms"

# a bad request is refused, not fatal
if xenstore-read /does/not/exist 2>/dev/null; then mb_fail "read of a missing node succeeded"; fi

# a second, independent xenstored (parallel tests)
other=$MB_DIR/other
mkdir -p "$other"
mb_bg "$other/log" env -u XENSTORED_PATH XENSTORED_RUNDIR="$other" LD_PRELOAD="$MB_SHIM" "$MB_XENSTORED_BIN" -N
mb_wait_for 10 env XENSTORED_PATH="$other/socket" xenstore-exists / ||
  mb_fail "second xenstored did not start: $(cat "$other/log")"
XENSTORED_PATH=$other/socket xenstore-write /test/a/b other
mb_assert_eq "hello world" "$(xenstore-read /test/a/b)" "first store untouched by the second"

# restart: the store is in memory, so it comes back empty
mb_xenstored_restart
if xenstore-exists /test/a/b; then mb_fail "store survived a restart"; fi
xenstore-write /test/again 1
mb_assert_eq 1 "$(xenstore-read /test/again)" "xenstored answers after restart"

# collectd with stock plugins only
mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
LoadPlugin memory
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 mb_getval "$MB_HOSTNAME/memory/memory-used" || mb_fail "stock memory plugin values not visible"
used=$(mb_getval "$MB_HOSTNAME/memory/memory-used")
mb_assert "memory-used is a positive number ($used)" awk -v v="$used" 'BEGIN { exit !(v > 0) }'
mb_collectd_stop
mb_log "smoke test passed"
