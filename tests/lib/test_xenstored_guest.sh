#!/usr/bin/env bash
# Acting AS a guest domain (xs-guest-proxy: the xenbus ring, as a guest
# kernel uses it): xenstored resolves the guest's relative paths against
# /local/domain/<id>, lets it write its own data/ and nothing dom0 owns,
# delivers its watches, and the guest comes back after a xenstored restart.
. "$(dirname "$0")/harness.sh"

mb_xenstored_start
mb_guest_domain 5 vm5
mb_guest_domain 6 vm6
mb_guest_proxy_start 5
g5=$MB_GUEST_SOCK
mb_guest_proxy_start 6
g6=$MB_GUEST_SOCK

# own data/, relative path
mb_assert "guest 5 writes data/membal/stats (relative)" \
  mb_as_guest "$g5" xenstore-write data/membal/stats "membal 1"
mb_assert_eq "membal 1" "$(xenstore-read /local/domain/5/data/membal/stats)" \
  "dom0 reads what guest 5 wrote at /local/domain/5/data/membal/stats"
mb_assert_eq "vm5" "$(mb_as_guest "$g5" xenstore-read name)" "guest 5 reads its own name"
mb_assert_eq "n5" "$(xenstore-ls -p /local/domain/5/data | sed -n 's/.*(\(n5[^)]*\)).*/\1/p' | head -n1)" \
  "the node guest 5 created is owned by it"

# what it must not do
refused() { ! mb_as_guest "$@" 2>/dev/null; }
mb_assert "guest 5 cannot write its memory/target" refused "$g5" xenstore-write memory/target 99999999
mb_assert_eq 0 "$(xenstore-read /local/domain/5/memory/target)" "memory/target untouched"
mb_assert "guest 5 cannot write its name" refused "$g5" xenstore-write name evil
mb_assert "guest 5 cannot write guest 6's data" refused "$g5" xenstore-write /local/domain/6/data/x 1
mb_assert "guest 5 cannot read guest 6's data" refused "$g5" xenstore-read /local/domain/6/name
mb_assert "guest 5 cannot write outside /local/domain" refused "$g5" xenstore-write /tool/membal-sim/host evil
mb_assert "guest 6 writes its own data" mb_as_guest "$g6" xenstore-write data/meminfo_free 1234
mb_assert_eq 1234 "$(xenstore-read /local/domain/6/data/meminfo_free)" "guest 6's write landed in domain 6"

# a guest's watch (events travel back through the ring)
mb_bg "$MB_DIR/gwatch.out" env XENSTORED_PATH="$g5" xenstore-watch -n 2 /local/domain/5/memory/target
wpid=$MB_LAST_PID
mb_wait_for 5 grep -q target "$MB_DIR/gwatch.out" || mb_fail "guest watch: no initial event"
xenstore-write /local/domain/5/memory/target 524288
mb_wait_for 5 bash -c "! kill -0 $wpid" || mb_fail "guest watch did not fire on dom0's write"
mb_assert_eq 2 "$(grep -c target "$MB_DIR/gwatch.out")" "guest watch events"

# a large value crosses the 1 KiB ring in pieces
big=$(head -c 2000 /dev/zero | tr '\0' 'y')
mb_assert "guest writes a 2000-byte value" mb_as_guest "$g5" xenstore-write data/big "$big"
mb_assert_eq 2000 "$(xenstore-read /local/domain/5/data/big | wc -c | tr -d ' ' | awk '{ print $1 - 1 }')" \
  "2000 bytes arrived"
[ "$big" = "$(mb_as_guest "$g5" xenstore-read data/big)" ] || mb_fail "guest read back a different 2000-byte value"
mb_log "ok: guest reads the 2000-byte value back"

# many clients one after the other (each one's watches reset)
for i in $(seq 20); do
  mb_as_guest "$g5" xenstore-write data/n "$i" || mb_fail "guest write $i failed"
done
mb_assert_eq 20 "$(xenstore-read /local/domain/5/data/n)" "20 successive guest clients"

# xenstored restart: the proxy introduces the domain to the new one
mb_xenstored_restart
mb_guest_domain 5 vm5
mb_wait_for 10 mb_as_guest "$g5" xenstore-write data/again 1 || mb_fail "guest cannot write after a xenstored restart"
mb_assert_eq 1 "$(xenstore-read /local/domain/5/data/again)" "guest write after restart"
mb_assert "guest still confined after restart" refused "$g5" xenstore-write memory/target 1
