#!/usr/bin/env bash
# guestmem as a real guest sees it: connected through the xenbus ring as
# domain 5 (xs-guest-proxy), default DomainPath (relative paths). The record
# lands in the guest's own /local/domain/5/data, owned by the guest; a guest
# configured to write where it may not gets a clear refusal, no crash;
# xenstored restarts are survived; the urgent path works through the ring.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

mb_xenstored_start
mb_guest_domain 5 vm5
mb_guest_domain 6 vm6
mb_guest_proxy_start 5
g5=$MB_GUEST_SOCK
total=$((2000000 + RANDOM))
gm_meminfo "$total" 700000
gm_vmstat 10 20 30 40

# guest_conf [option line]: gm_conf with the guest's socket and no
# DomainPath (the drop-in default) unless given.
guest_conf() {
  mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
LoadPlugin csv
<Plugin csv>
  DataDir "$MB_DIR/csv"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin guestmem
<Plugin guestmem>
  MeminfoPath "$GM_MEMINFO"
  VmstatPath "$GM_VMSTAT"
  PressurePath "$GM_PRESSURE"
  XenstorePath "$g5"
  ${1:-}
</Plugin>
EOF
}

guest_conf
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 10 gm_field seq || mb_fail "no record at /local/domain/5/data/membal/stats from the guest"
mb_assert_eq "$total" "$(gm_field MemTotal)" "record written by guest 5 over the ring"
mb_assert_eq 700000 "$(xenstore-read /local/domain/5/data/meminfo_free)" "data/meminfo_free"
perm=$(xenstore-ls -p /local/domain/5/data/membal | tr -s ' .' ' ')
mb_assert "stats node owned by domain 5 ($perm)" grep -q 'stats = .*(n5)' <<<"$perm"
mb_assert "nothing written in dom0's own data" bash -c '! xenstore-exists /local/domain/0/data/membal/stats'

# urgent through the ring: the guest swaps fast until an urgent record is
# there
t0=$(mb_now_ms)
GM_PSWPIN=10
gm_swap_until 20 bash -c "xenstore-read -R /local/domain/5/data/membal/stats | grep -qx 'urgent 1'" ||
  mb_fail "no urgent record through the ring"
mb_log "MEASURED: urgent record latency through the guest ring $(($(mb_now_ms) - t0)) ms from the start of the swapping (poll 200 ms, includes the test's 100 ms polling)"

# xenstored restart: the proxy re-introduces the domain, guestmem reconnects
s=$(gm_field seq)
mb_xenstored_restart
mb_guest_domain 5 vm5
mb_wait_for 10 gm_seq_above "$s" || mb_fail "records did not resume through the ring after a xenstored restart"
mb_log "ok: records resume through the ring after a xenstored restart (seq $(gm_field seq))"
mb_collectd_stop

# a guest pointed at another domain's path: refused by xenstored, logged
guest_conf 'DomainPath "/local/domain/6"'
mb_collectd_start "$MB_DIR/collectd.conf"
mb_wait_for 5 mb_log_has 'guestmem: xenstored refused to write /local/domain/6/data/membal/stats: Permission denied' ||
  mb_fail "no clear refusal logged"
mb_log "ok: logged: $(grep 'refused to write' "$MB_CD_LOG" | tail -n1)"
# two more intervals of guestmem (local values dispatched), each one more
# refused write: still one line
mb_wait_dispatches 2 "$MB_HOSTNAME/guestmem/memory-MemTotal" ||
  mb_fail "guestmem dispatched no more local values"
mb_assert "refusal logged once" test "$(grep -c 'refused to write /local/domain/6/' "$MB_CD_LOG")" -eq 1
mb_assert "nothing written for domain 6" bash -c '! xenstore-exists /local/domain/6/data/membal/stats'
mb_assert "local values still dispatched" bash -c "collectdctl -s $MB_CD_SOCK getval $MB_HOSTNAME/guestmem/memory-MemTotal | grep -q ^value="
mb_assert "collectd alive" mb_collectd_alive
