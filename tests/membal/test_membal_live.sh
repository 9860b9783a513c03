#!/usr/bin/env bash
# membal's live view (<Live> block) in the real collectd with vmmem, the sim
# backend in a real xenstored and rrdtool, looked at by headless Chromium:
#  - it listens on loopback only, and only when configured;
#  - GET /api/state: host, pool, every domain with current, target, CMA,
#    reason, pressure, held and sample age, and the decisions; its numbers
#    are collectd's own values of the same round (collectdctl getval);
#  - GET /: the page, rendered by Chromium, shows every domain with the
#    numbers of `membal status --json` (same round; the same bytes as
#    /api/state); a screenshot is kept;
#  - GET /api/history: the last hour from the RRD files;
#  - read-only: POST/PUT/DELETE get 405; unknown pages 404; garbage 400;
#    an oversized request 4xx; nothing crashes;
#  - many clients: connections beyond MaxConnections are refused, collectd's
#    thread count does not grow with them, and a flush round still runs
#    while they and a client that never reads its answer hang on.
. "$(dirname "$0")/../lib/membal_lib.bash"

command -v chromium >/dev/null || mb_skip "chromium not installed (.ci/install-deps.sh)"

MiB=$MBT_MIB

mb_xenstored_start
mbt_three_guests 900 150 300

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
maxc=8
# Period long enough that every round below is one the test asked for.
mbt_conf "$MB_DIR/collectd.conf" <<EOF
  Policy "cagma"
  Period 3600
  Reserve "1GiB"
  <Live>
    Port $port
    MaxConnections $maxc
    DataDir "$MB_DIR/rrd"
  </Live>
EOF
mb_collectd_start "$MB_DIR/collectd.conf"
mbt_wait_samples 1 2 3
base="http://127.0.0.1:$port"

# ---- loopback only, by default ----
listen=$(ss -Hltn "sport = :$port" | awk '{print $4}')
mb_assert_eq "127.0.0.1:$port" "$listen" "the live view listens on loopback only"

# http <method> <path>: prints the status code (and the body to $MB_DIR/body).
http() {
  python3 - "$port" "$1" "$2" "$MB_DIR/body" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
c.request(sys.argv[2], sys.argv[3], body=b"x" if sys.argv[2] in ("POST", "PUT") else None)
r = c.getresponse()
open(sys.argv[4], "wb").write(r.read())
print(r.status)
EOF
}

mb_assert_eq 503 "$(http GET /api/state)" "before the first round: 503"
grep -q "no round yet" "$MB_DIR/body" || mb_fail "503 without its reason: $(cat "$MB_DIR/body")"

mbt_flush_round
mbt_flush_round
round=$(mbt_round)
mb_assert_eq 200 "$(http GET /api/state)" "GET /api/state"
cp "$MB_DIR/body" "$MB_DIR/state.json"

# Every number of /api/state against collectd's own values (same round).
python3 - "$MB_DIR/state.json" "$round" "$MB_HOSTNAME" "$MB_CD_SOCK" <<'EOF' || mb_fail "/api/state disagrees with collectd's values"
import json, subprocess, sys
st = json.load(open(sys.argv[1]))
round_, host, sock = int(sys.argv[2]), sys.argv[3], sys.argv[4]
def getval(ident):
    out = subprocess.run(["collectdctl", "-s", sock, "getval", ident],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split("=")[1])
errs = []
def eq(what, a, b):
    # collectdctl prints 7 significant digits
    if isinstance(b, float):
        if abs(a - b) > 1e-6 * max(abs(a), abs(b)):
            errs.append(f"{what}: state {a} != {b}")
    elif a != b:
        errs.append(f"{what}: state {a} != {b}")
eq("round", st["round"], round_)
eq("trigger", st["trigger"], "flush")
eq("policy", st["policy"], "cagma")
eq("host", st["host"], host)
names = sorted(d["name"] for d in st["domains"])
eq("domains", names, ["vm1", "vm2", "vm3"])
eq("pool", st["pool"]["pool_kib"] * 1024, getval(f"{host}/membal/memory-pool"))
eq("sum", st["pool"]["sum_targets_kib"] * 1024, getval(f"{host}/membal/memory-sum_targets"))
s = 0
for d in st["domains"]:
    n = d["name"]
    eq(n + " target", d["target_kib"] * 1024, getval(f"{host}/membal-{n}/memory-target"))
    eq(n + " cma", d["cma_kib"] * 1024, getval(f"{host}/membal-{n}/memory-cma"))
    eq(n + " current", d["current_kib"] * 1024, getval(f"{host}/vmmem-{n}/memory-current"))
    for k in ("reason", "pressure", "held", "sample_age_s", "stale", "min_kib", "max_kib"):
        if k not in d:
            errs.append(f"{n}: no {k}")
    if not (d["min_kib"] <= d["target_kib"] <= d["max_kib"]):
        errs.append(f"{n}: target outside [min, max]")
    if d["sample_age_s"] is None or not 0 <= d["sample_age_s"] < 30:
        errs.append(f"{n}: sample age {d['sample_age_s']}")
    s += d["target_kib"]
eq("sum of domains", s, st["pool"]["sum_targets_kib"])
# vm1 (900 MiB used of 1 GiB) grew in the first round: a decision says so.
moves = [m for m in st["decisions"] if m["name"] == "vm1"]
if not moves or moves[-1]["to_kib"] <= moves[-1]["from_kib"] or moves[-1]["trigger"] != "flush":
    errs.append(f"no grow decision for vm1: {st['decisions']}")
if errs:
    print("\n".join(errs)); sys.exit(1)
print("state ok:", names, "round", st["round"])
EOF
mb_log "ok: /api/state matches collectd's values of round $round"

# ---- the page in headless Chromium ----
chrome() {
  timeout -k 5 300 chromium --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update \
    --disable-sync --user-data-dir="$MB_DIR/chrome" --window-size=1000,1100 \
    --virtual-time-budget=5000 "$@" 2>>"$MB_DIR/chrome.log"
}
chrome --dump-dom "$base/" >"$MB_DIR/page.html" || mb_fail "chromium could not load $base/"
chrome --screenshot="$MB_DIR/live.png" "$base/" >/dev/null || mb_fail "chromium took no screenshot"
# /api/state and `membal status --json` of one round are the same bytes (a
# round that falls between the two reads shows as a new round number: read
# both again).
json_round() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["round"])' "$1"; }
for try in 1 2 3; do
  mb_assert_eq 200 "$(http GET /api/state)" "GET /api/state after the page"
  "$MEMBAL_BUILD_DIR/contrib/membal" -s "$MB_DIR/membal.sock" status --json >"$MB_DIR/status.json" ||
    mb_fail "membal status --json failed"
  cmp -s "$MB_DIR/body" "$MB_DIR/status.json" && break
  [ "$(json_round "$MB_DIR/body")" != "$(json_round "$MB_DIR/status.json")" ] ||
    mb_fail "/api/state and membal status --json differ in the same round"
  [ "$try" = 3 ] && mb_fail "a new round between every read of /api/state and membal status"
done
mb_log "ok: /api/state = membal status --json (round $(mbt_round))"
python3 - "$MB_DIR/page.html" "$MB_DIR/status.json" <<'EOF' || mb_fail "the page does not show membal status --json"
import html.parser, json, sys
st = json.load(open(sys.argv[2]))
class P(html.parser.HTMLParser):
    def __init__(s):
        super().__init__(); s.rows = {}; s.row = None; s.field = None; s.round = None
    def handle_starttag(s, tag, a):
        a = dict(a)
        if tag == "body": s.round = a.get("data-round")
        if tag == "tr" and "data-name" in a: s.row = s.rows.setdefault(a["data-name"], {})
        if tag == "td" and s.row is not None: s.field = a.get("data-field")
    def handle_endtag(s, tag):
        if tag == "td": s.field = None
        if tag == "tr": s.row = None
    def handle_data(s, d):
        if s.row is not None and s.field: s.row[s.field] = s.row.get(s.field, "") + d
p = P(); p.feed(open(sys.argv[1]).read())
errs = []
if p.round is None or int(p.round) != st["round"]:
    errs.append(f"page shows round {p.round}, state {st['round']}")
for d in st["domains"]:
    r = p.rows.get(d["name"])
    if r is None:
        errs.append(f"{d['name']} not on the page"); continue
    for f in ("current", "target", "cma"):
        want = round(d[f + "_kib"] / 1024 * 10) / 10
        if abs(float(r[f]) - want) > 0.05:
            errs.append(f"{d['name']} {f}: page {r[f]} != {want}")
    if r["reason"] != d["reason"]:
        errs.append(f"{d['name']} reason: page {r['reason']} != {d['reason']}")
if errs:
    print("\n".join(errs)); sys.exit(1)
print("page ok:", sorted(p.rows))
EOF
mb_log "ok: the page shows every domain with membal status --json's numbers"
art=${MEMBAL_BUILD_DIR:-$MB_DIR}/artifacts
mkdir -p "$art" && cp "$MB_DIR/live.png" "$art/live-view.png"
mb_log "screenshot: $art/live-view.png"
[ "$(stat -c %s "$MB_DIR/live.png")" -gt 10000 ] || mb_fail "screenshot is nearly empty"

# ---- history from RRD ----
# (the rrdtool plugin writes a domain's first values within an interval or
# two: asked again until it has)
history_ok() {
  [ "$(http GET /api/history)" = 200 ] && python3 - "$MB_DIR/body" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))
assert sorted(h["domains"]) == ["vm1", "vm2", "vm3"], h["domains"].keys()
cur = h["domains"]["vm1"]["current"]
assert cur and cur["step"] > 0 and len(cur["values"]) >= 300, "current series too short"
assert any(v is not None for v in cur["values"]), "no value in the last hour"
assert h["pool"] is not None
print("history ok: step", cur["step"], "points", len(cur["values"]))
EOF
}
mb_wait_for 30 history_ok || mb_fail "/api/history has no RRD data: $(history_ok 2>&1 | tail -n 2)"
mb_log "ok: /api/history: $(history_ok)"

# ---- read-only, bad requests ----
for m in POST PUT DELETE; do
  mb_assert_eq 405 "$(http "$m" /api/state)" "$m /api/state refused"
done
mb_assert_eq 404 "$(http GET /nope)" "unknown page"
mb_assert_eq 404 "$(http GET /../../etc/passwd)" "path outside the view"
code=$(http GET "/api/state?$(head -c 60000 /dev/zero | tr '\0' a)")
[ "$code" -ge 400 ] && [ "$code" -lt 500 ] || mb_fail "an oversized request got $code, not a 4xx"
mb_log "ok: oversized request -> $code"
# raw <bytes as a python literal>: the status line the server answers, or
# "closed" when it closes the connection without one.
raw() {
  python3 - "$port" "$1" <<'EOF'
import ast, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.sendall(ast.literal_eval(sys.argv[2]))
line = s.recv(100).split(b"\r\n")[0].decode(errors="replace")
print(line or "closed")
EOF
}
r=$(raw 'b"GET /api/state HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"')
case "$r" in HTTP/1.1\ 400*) mb_log "ok: malformed header -> $r" ;; *) mb_fail "a malformed header got '$r'" ;; esac
r=$(raw 'b"GET /api/state HTTP/9.9\r\n\r\n"')
case "$r" in HTTP/1.1\ 4??* | HTTP/1.1\ 505*) mb_log "ok: unknown HTTP version -> $r" ;; *) mb_fail "HTTP/9.9 got '$r'" ;; esac
r=$(raw 'b"\x00\x01\x02 GARBAGE \xff\r\n\r\n"')
case "$r" in HTTP/1.1\ 4??* | closed) mb_log "ok: binary garbage -> $r" ;; *) mb_fail "binary garbage got '$r'" ;; esac
mb_collectd_alive || mb_fail "collectd died on bad requests"

# ---- many clients, a client that never reads ----
threads0=$(ls "/proc/$MB_CD_PID/task" | wc -l)
python3 - "$port" "$MB_DIR/hold.ready" "$MB_DIR/hold.stop" "$maxc" >"$MB_DIR/hold.log" 2>&1 <<'EOF' &
import os, socket, sys, time
port, ready, stop, maxc = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
held = []
# A client that asks for the history and never reads it.
slow = socket.create_connection(("127.0.0.1", port))
slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
slow.sendall(b"GET /api/history HTTP/1.1\r\nHost: x\r\n\r\n")
held.append(slow)
# Clients that open a connection and send half a request.
for i in range(4 * maxc):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /api/state HTTP/1.1\r\n")
        held.append(s)
    except OSError as e:
        print("connect", i, e)
# How many the server kept open: the others it closes at once. Polled
# until no more than maxc are open (20 s at most), not after a fixed pause
# a slow machine may not have closed them in; the test asserts the count.
closed = set()
for s in held[1:]:
    s.setblocking(False)
deadline = time.monotonic() + 20
while True:
    for s in held[1:]:
        if s in closed:
            continue
        try:
            while s.recv(4096) != b"":  # an answer before the close: read on
                pass
            closed.add(s)  # end of file: closed by the server
        except BlockingIOError:
            pass  # open, nothing (more) to read
        except OSError:
            closed.add(s)
    alive = len(held) - 1 - len(closed)
    if alive <= maxc or time.monotonic() >= deadline:
        break
    time.sleep(0.1)
print("open", alive)
open(ready, "w").write(str(alive))
while not os.path.exists(stop):
    time.sleep(0.1)  # waits for the test's stop file: the pace of that wait
EOF
hold_pid=$!
mb_wait_for 60 test -s "$MB_DIR/hold.ready" || mb_fail "the connection holder never got going"
open=$(cat "$MB_DIR/hold.ready")
[ "$open" -le "$maxc" ] || mb_fail "$open connections held open, MaxConnections $maxc"
mb_log "ok: $((4 * maxc)) half requests + 1 unread answer: $open kept open (MaxConnections $maxc)"
threads1=$(ls "/proc/$MB_CD_PID/task" | wc -l)
mb_assert_eq "$threads0" "$threads1" "collectd's thread count with the clients hanging on"
before=$(mbt_round)
mbt_flush_round
mb_log "ok: round $before -> $(mbt_round) while the clients hang on"
touch "$MB_DIR/hold.stop"
wait "$hold_pid"
mb_assert_eq 200 "$(http GET /api/state)" "GET /api/state after the clients left"
mb_collectd_alive || mb_fail "collectd died"

mb_collectd_stop
mb_log "live view test passed"
