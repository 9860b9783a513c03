#!/usr/bin/env bash
# membal's figures in Prometheus, with a real Prometheus server scraping the
# real collectd (vmmem + membal on the sim backend in a real xenstored):
#  - GET /metrics of the live view passes `promtool check metrics` (the
#    exposition format and Prometheus' naming rules);
#  - its numbers are those of /api/state in the same round, and the reason
#    is a label (membal_domain_reason{reason="..."});
#  - Prometheus, configured with the scrape configuration docs/operating.md
#    gives (taken from the document itself), stores membal_* per domain and
#    collectd's write_prometheus values with the domain in a `domain` label.
. "$(dirname "$0")/../lib/membal_lib.bash"

command -v prometheus >/dev/null || mb_skip "prometheus not installed (.ci/install-deps.sh)"
command -v promtool >/dev/null || mb_skip "promtool not installed"
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null ||
  mb_skip "python3-prometheus-client not installed (.ci/install-deps.sh)"
[ -f "$MB_STOCK_PLUGINDIR/write_prometheus.so" ] ||
  mb_skip "collectd's write_prometheus plugin is missing"

MiB=$MBT_MIB

mb_xenstored_start
mbt_three_guests 900 150 300

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
live_port=$(freeport)
wp_port=$(freeport)
prom_port=$(freeport)

# Period long enough that every round is one the test asked for. Stock
# plugins load before PluginDir points at the build's.
mb_collectd_conf "$MB_DIR/collectd.conf" <<EOF
LoadPlugin rrdtool
<Plugin rrdtool>
  DataDir "$MB_DIR/rrd"
</Plugin>
LoadPlugin write_prometheus
<Plugin write_prometheus>
  Host "127.0.0.1"
  Port "$wp_port"
</Plugin>
PluginDir "$MB_PLUGINDIR"
LoadPlugin vmmem
<Plugin vmmem>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
</Plugin>
LoadPlugin membal
<Plugin membal>
  Backend "sim"
  XenstorePath "$XENSTORED_PATH"
  ControlSocket "$MB_DIR/membal.sock"
  Policy "cagma"
  Period 3600
  Reserve "1GiB"
  <Live>
    Port $live_port
  </Live>
</Plugin>
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2 3
mbt_flush_round
mbt_flush_round
round=$(mbt_round)

get() { curl -fsS --max-time 30 "$1"; }
get "http://127.0.0.1:$live_port/metrics" >"$MB_DIR/metrics.txt" || mb_fail "GET /metrics failed"
get "http://127.0.0.1:$live_port/api/state" >"$MB_DIR/state.json" || mb_fail "GET /api/state failed"
mb_assert_eq "$round" "$(mbt_round)" "no round between the two reads"
promtool check metrics <"$MB_DIR/metrics.txt" >"$MB_DIR/promtool.txt" 2>&1 ||
  mb_fail "promtool check metrics: $(cat "$MB_DIR/promtool.txt")"
mb_log "ok: /metrics passes promtool check metrics"

# /metrics against /api/state of the same round, parsed by the Prometheus
# project's own Python client (Debian's python3-prometheus-client, so
# Debian's python3 whatever python3 comes first in PATH).
/usr/bin/python3 - "$MB_DIR/metrics.txt" "$MB_DIR/state.json" <<'EOF' || mb_fail "/metrics disagrees with /api/state"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
st = json.load(open(sys.argv[2]))
def dom_value(fam, dom):
    v = [s.value for s in fams[fam].samples if s.labels.get("domain") == dom]
    assert len(v) == 1, (fam, dom, v)
    return v[0]
n = 0
for d in st["domains"]:
    name = d["name"]
    for key, fam in (("current_kib", "membal_domain_current_bytes"),
                     ("target_kib", "membal_domain_target_bytes"),
                     ("cma_kib", "membal_domain_cma_bytes"),
                     ("min_kib", "membal_domain_min_bytes"),
                     ("max_kib", "membal_domain_max_bytes")):
        got = dom_value(fam, name)
        assert got == d[key] * 1024, (fam, name, got, d[key])
        n += 1
    reasons = [s.labels["reason"] for s in fams["membal_domain_reason"].samples
               if s.labels["domain"] == name]
    assert reasons == [d["reason"]], (name, reasons, d["reason"])
    assert dom_value("membal_domain_held", name) == (1 if d["held"] else 0)
    assert dom_value("membal_domain_stale", name) == (1 if d["stale"] else 0)
    # JSON keeps milliseconds and says null for a guest never heard from
    # (Domain-0 here): /metrics leaves that value out.
    ages = [s.value for s in fams["membal_domain_sample_age_seconds"].samples
            if s.labels["domain"] == name]
    if d["sample_age_s"] is None:
        assert ages == [], (name, ages)
    else:
        assert len(ages) == 1 and abs(ages[0] - d["sample_age_s"]) <= 0.0005, (name, ages, d)
    n += 4
pool = st["pool"]
for key, fam in (("pool_kib", "membal_pool_bytes"), ("total_kib", "membal_host_memory_bytes"),
                 ("sum_targets_kib", "membal_targets_sum_bytes"),
                 ("reserve_kib", "membal_reserve_bytes")):
    v = fams[fam].samples[0].value
    assert v == pool[key] * 1024, (fam, v, pool[key])
    n += 1
# prometheus_client strips _total from a counter family's name.
assert fams["membal_rounds"].samples[0].value == st["round"]
info = fams["membal_info"].samples[0].labels
assert info["policy"] == st["policy"] and info["host"] == st["host"], info
assert [d["name"] for d in st["domains"]] == ["vm1", "vm2", "vm3"], st["domains"]  # not Domain-0
print(f"{n + 2} values agree", file=sys.stderr)
EOF
mb_log "ok: /metrics = /api/state of round $round, the reason as a label"

# A real Prometheus with the scrape configuration of docs/operating.md.
doc="$MEMBAL_SOURCE_DIR/docs/operating.md"
awk '/<!-- prometheus.yml -->/ {f=1; next} f && /^```yaml/ {next} f && /^```/ {exit} f' "$doc" |
  sed -e "s/127.0.0.1:9091/127.0.0.1:$live_port/" -e "s/127.0.0.1:9103/127.0.0.1:$wp_port/" \
    >"$MB_DIR/prometheus.yml"
grep -q "$wp_port" "$MB_DIR/prometheus.yml" || mb_fail "no scrape configuration in $doc"
printf 'global:\n  scrape_interval: 1s\n' | cat - "$MB_DIR/prometheus.yml" >"$MB_DIR/prom.yml"
promtool check config "$MB_DIR/prom.yml" >"$MB_DIR/promtool-config.txt" 2>&1 ||
  mb_fail "promtool check config: $(cat "$MB_DIR/promtool-config.txt")"
mb_bg "$MB_DIR/prometheus.log" prometheus --config.file="$MB_DIR/prom.yml" \
  --storage.tsdb.path="$MB_DIR/tsdb" --web.listen-address="127.0.0.1:$prom_port"

# query <promql>: the result vector as "labels value" lines, sorted.
query() {
  curl -fsS --max-time 30 -G "http://127.0.0.1:$prom_port/api/v1/query" \
    --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "success", r
for s in r["data"]["result"]:
    m = {k: v for k, v in s["metric"].items() if k not in ("__name__", "instance", "job")}
    print(" ".join(f"{k}={m[k]}" for k in sorted(m)), s["value"][1])' | sort
}
has_series() { [ "$(query "$1" | wc -l)" -ge "$2" ]; }
# Prometheus scrapes every second; the waits fail when its log and its
# `up` series stop changing.
mb_wait_progress 30 "wc -l <'$MB_DIR/prometheus.log'; query up 2>/dev/null" \
  has_series 'up{job=~"membal|collectd"} == 1' 2 ||
  mb_fail "Prometheus did not scrape both targets: $(tail -5 "$MB_DIR/prometheus.log")"
mb_wait_progress 30 "query up 2>/dev/null" has_series 'membal_domain_target_bytes' 3 ||
  mb_fail "Prometheus has no membal_domain_target_bytes for the 3 guests"
mb_wait_progress 30 "query up 2>/dev/null" has_series 'collectd_membal_memory{type="target"}' 3 ||
  mb_fail "Prometheus has no collectd_membal_memory{type=target} for the 3 guests"
mb_assert_eq "$round" "$(mbt_round)" "no round while Prometheus scraped"

python3 - "$MB_DIR/state.json" "$(query membal_domain_target_bytes)" \
  "$(query 'collectd_membal_memory{type="target"}')" "$(query membal_domain_reason)" \
  "$(query 'collectd_vmmem_memory{type="guest_MemTotal"}')" "$MB_HOSTNAME" <<'EOF' || mb_fail "Prometheus' values disagree with /api/state"
import json, sys
st = json.load(open(sys.argv[1]))
def rows(text):
    out = {}
    for line in text.splitlines():
        *labels, value = line.split(" ")
        out[tuple(labels)] = float(value)
    return out
native, collectd, reasons, vmmem = (rows(t) for t in sys.argv[2:6])
# write_prometheus names the host `instance`, which Prometheus keeps as
# exported_instance beside its own.
host = f"exported_instance={sys.argv[6]}"
for d in st["domains"]:
    name, target = d["name"], d["target_kib"] * 1024
    assert native[(f"domain={name}",)] == target, (name, native)
    # write_prometheus's label `membal` renamed to `domain` by the
    # documented relabelling, and gone.
    assert collectd[(f"domain={name}", host, "type=target")] == target, (name, collectd)
    assert reasons[(f"domain={name}", f"reason={d['reason']}")] == 1, (name, reasons)
for key in vmmem:
    assert key[0].startswith("domain=vm") and key[1:] == (host, "type=guest_MemTotal"), key
assert len(vmmem) == 3, vmmem
EOF
mb_log "ok: Prometheus stores membal_domain_target_bytes, collectd_membal_memory and collectd_vmmem_memory with a domain label, equal to /api/state"
mb_check_sanitizers
mb_log "PASS"
