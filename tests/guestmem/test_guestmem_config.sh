#!/usr/bin/env bash
# guestmem's configuration is strict: unknown options and bad values make
# collectd refuse to start, naming the option; a valid block is accepted.
. "$(dirname "$0")/../lib/harness.sh"
. "$MEMBAL_SOURCE_DIR/tests/lib/guestmem.sh"

gm_meminfo 2000000 500000
gm_vmstat 0 0 0 0
conf=$MB_DIR/collectd.conf

gm_conf "$conf" "Bogus 1"
mb_collectd_refuses "$conf" 'guestmem: unknown option "Bogus"'
gm_conf "$conf" "SwapThreshold -1"
mb_collectd_refuses "$conf" 'guestmem: SwapThreshold must be a positive number'
gm_conf "$conf" "MajorFaultThreshold \"many\""
mb_collectd_refuses "$conf" 'guestmem: refusing the configuration \(option "MajorFaultThreshold"\)'
gm_conf "$conf" "UrgentMinInterval 0"
mb_collectd_refuses "$conf" 'guestmem: UrgentMinInterval must be a positive number'
gm_conf "$conf" "UrgentPollInterval 0.001"
mb_collectd_refuses "$conf" 'guestmem: UrgentPollInterval must be 0 \(off\) or at least 0.01'
gm_conf "$conf" "DomainPath \"/local/domain/5/\""
mb_collectd_refuses "$conf" 'guestmem: DomainPath "/local/domain/5/" is not a xenstore path'
gm_conf "$conf" "DomainPath \"/local/domain/5 x\""
mb_collectd_refuses "$conf" 'guestmem: DomainPath "/local/domain/5 x" is not a xenstore path'
gm_conf "$conf" "StallWindow 0.2"
mb_collectd_refuses "$conf" 'guestmem: StallWindow must be within \[0.5, 10\] seconds'
gm_conf "$conf" "StallWindow 11"
mb_collectd_refuses "$conf" 'guestmem: StallWindow must be within'
gm_conf "$conf" "StallThreshold 2" "StallWindow 1"
mb_collectd_refuses "$conf" 'guestmem: StallThreshold \(2 s\) must be at least 1 us and at most StallWindow \(1 s\)'
gm_conf "$conf" "StallThreshold 0"
mb_collectd_refuses "$conf" 'guestmem: StallThreshold must be a positive number'
gm_conf "$conf" "PressurePath 1"
mb_collectd_refuses "$conf" 'guestmem: refusing the configuration \(option "PressurePath"\)'
gm_conf "$conf" "MeminfoPath 42"
mb_collectd_refuses "$conf" 'guestmem: refusing the configuration \(option "MeminfoPath"\)'

# every documented option at once is accepted, and the plugin runs
mb_xenstored_start
gm_conf "$conf" "SwapThreshold 10" "MajorFaultThreshold 20" "UrgentMinInterval 0.5" \
  "UrgentPollInterval 0" "StallThreshold 0.1" "StallWindow 2" "PressurePath \"\""
mb_collectd_start "$conf"
mb_wait_for 10 gm_field seq || mb_fail "no record with a valid configuration"
mb_assert "log says the urgent check is off" mb_log_has 'guestmem: .*urgent check off'
