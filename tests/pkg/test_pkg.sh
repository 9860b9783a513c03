#!/usr/bin/env bash
# The Debian packages as an admin uses them (issue 15, item 7): build
# membal-dom0 and membal-guest with cpack from a Release build of this
# source, check them (lintian: 0 errors; Section admin; versioned Depends on
# collectd; stripped ELF files; no load generator in the guest package),
# then on this machine's own collectd (Debian's /etc/collectd):
#
#   install the .deb, enable it as the README says (copy the drop-in to
#   /etc/collectd/collectd.conf.d/, or link it), check that collectd loads
#   our plugins, `apt-get remove` (or `purge`) the package, and check that
#   `collectd -t` AND a real start of the daemon with the machine's
#   configuration both succeed, without our plugins.
#
# Rounds: dom0 copy + remove, dom0 copy + purge, guest copy + remove, guest
# link + purge. The real daemon runs in a private mount namespace with
# tmpfs over /var/lib/collectd and /run, so it touches neither the
# machine's RRD files nor a running collectd's socket or pid file; its log
# goes to a logfile drop-in of the test. /etc/collectd is saved before and
# restored after (also on failure), and compared at the end.
#
# Needs root (exit 77 otherwise), and the packages .ci/install-deps.sh
# installs (collectd, lintian, the build dependencies). Serialised with
# other runs on this machine by a lock file. MEMBAL_PKG_DIR=<dir> uses the
# .debs already in <dir> instead of building them.
. "$(dirname "$0")/../lib/harness.sh"

[ "$(id -u)" -eq 0 ] || mb_skip "needs root (installs and removes packages)"

need() { command -v "$1" >/dev/null || mb_fail "$1 not found (.ci/install-deps.sh installs it)"; }
for c in dpkg-deb apt-get cpack lintian unshare flock file collectd; do need "$c"; done
dpkg-query -W -f='${Status}' collectd 2>/dev/null | grep -q "install ok installed" ||
  mb_fail "package collectd not installed: membal's packages depend on it (.ci/install-deps.sh)"
[ -f /etc/collectd/collectd.conf ] || mb_fail "no /etc/collectd/collectd.conf (package collectd)"
grep -q '^<Include "/etc/collectd/collectd.conf.d">' /etc/collectd/collectd.conf ||
  mb_fail "/etc/collectd/collectd.conf does not include collectd.conf.d: the README's enabling step would not apply"

# One run at a time on this machine (packages and /etc/collectd are global).
exec 9>/run/lock/membal-test-pkg.lock
flock -w 1800 9 || mb_fail "another membal package test holds /run/lock/membal-test-pkg.lock"

for p in membal-dom0 membal-guest; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -Eq "ok (installed|config-files|half)"; then
    mb_fail "$p is installed on this machine: the test would remove it"
  fi
done

# ------------------------------------------------------- save /etc/collectd
etc_sum() { (cd /etc/collectd && find . -printf '%p %y %m %l\n' | sort && find . -type f -exec md5sum {} + | sort); }
etc_sum >"$MB_DIR/etc-before.sum"
tar -C /etc -cpf "$MB_DIR/etc-collectd.tar" collectd
PKG_RESTORED=0
pkg_restore() {
  [ "$PKG_RESTORED" = 1 ] && return 0
  local p
  for p in membal-dom0 membal-guest; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -Eq "ok (installed|config-files|half)"; then
      apt-get purge -y -o DPkg::Lock::Timeout=600 "$p" >>"$MB_DIR/apt.log" 2>&1 ||
        mb_log "could not purge $p (see $MB_DIR/apt.log)"
    fi
  done
  rm -rf /etc/collectd && tar -C /etc -xpf "$MB_DIR/etc-collectd.tar"
  PKG_RESTORED=1
}
trap 'rc=$?; set +e; [ "$rc" -ne 0 ] && cat "$MB_DIR"/*.stderr 2>/dev/null | tail -n 20 >&2; pkg_restore; (exit $rc); mb__cleanup' EXIT

# ------------------------------------------------------------ the packages
if [ -n "${MEMBAL_PKG_DIR:-}" ]; then
  debdir=$MEMBAL_PKG_DIR
else
  debdir=$MB_DIR/build
  mb_log "building the packages (Release, cpack) in $debdir"
  cmake -S "$MEMBAL_SOURCE_DIR" -B "$debdir" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX=/usr -DMEMBAL_TESTS=OFF >"$MB_DIR/build.log" 2>&1 ||
    mb_fail "cmake failed: $(tail -n 5 "$MB_DIR/build.log")"
  cmake --build "$debdir" -j2 >>"$MB_DIR/build.log" 2>&1 || mb_fail "build failed: $(tail -n 20 "$MB_DIR/build.log")"
  (cd "$debdir" && cpack -G DEB) >>"$MB_DIR/build.log" 2>&1 || mb_fail "cpack failed: $(tail -n 20 "$MB_DIR/build.log")"
fi
dom0_deb=$(ls "$debdir"/membal-dom0_*.deb 2>/dev/null | head -n1)
guest_deb=$(ls "$debdir"/membal-guest_*.deb 2>/dev/null | head -n1)
[ -f "$dom0_deb" ] && [ -f "$guest_deb" ] || mb_fail "no membal-dom0/membal-guest .deb in $debdir"
mb_log "packages: $(basename "$dom0_deb") $(basename "$guest_deb")"

# lintian: every tag printed, no error allowed.
lintian --tag-display-limit 0 "$dom0_deb" "$guest_deb" >"$MB_DIR/lintian.out" 2>&1 || true
sed 's/^/  lintian: /' "$MB_DIR/lintian.out" >&2
grep -q '^E: ' "$MB_DIR/lintian.out" && mb_fail "lintian reports errors"
nerr=$(grep -c '^E: ' "$MB_DIR/lintian.out" || true)
mb_assert_eq 0 "$nerr" "lintian errors on both packages"

for deb in "$dom0_deb" "$guest_deb"; do
  b=$(basename "$deb")
  mb_assert_eq admin "$(dpkg-deb -f "$deb" Section)" "$b Section"
  dep=$(dpkg-deb -f "$deb" Depends)
  mb_assert "$b Depends on collectd (>= 5.12...) and collectd-core (>= 5.12...) ($dep)" \
    bash -c "grep -Eq '(^|, )collectd \(>= 5\.12' <<<'$dep' && grep -Eq '(^|, )collectd-core \(>= 5\.12' <<<'$dep'"
  x=$MB_DIR/x-$b
  mkdir -p "$x"
  dpkg-deb -x "$deb" "$x"
  n=0
  while IFS= read -r f; do
    file -b "$f" | grep -q '^ELF' || continue
    file -b "$f" | grep -q ', stripped' || mb_fail "$b: ${f#"$x"} is not stripped"
    n=$((n + 1))
  done < <(find "$x" -type f)
  [ "$n" -gt 0 ] || mb_fail "$b holds no ELF file"
  mb_log "ok: $b: $n ELF files, all stripped"
  for d in copyright changelog.gz; do
    test -s "$x/usr/share/doc/${b%%_*}/$d" || mb_fail "$b lacks /usr/share/doc/${b%%_*}/$d"
  done
done
if dpkg-deb -c "$guest_deb" | grep -q 'membal-memload'; then
  mb_fail "the load generator membal-memload is in the guest package"
fi
mb_log "ok: no membal-memload in $(basename "$guest_deb")"

# ------------------------------------------------- the machine's collectd
# Its log: a drop-in of the test, first in collectd.conf.d (00-), so it sees
# what the later drop-ins cause.
testlog_dropin() {
  cat >/etc/collectd/collectd.conf.d/00-membal-test-log.conf <<EOF
# written by membal's tests/pkg/test_pkg.sh; removed when it ends
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File "$1"
</Plugin>
EOF
}

# cd_try <tag>: `collectd -t`, then a real start of /usr/sbin/collectd with
# /etc/collectd/collectd.conf; succeeds once the daemon logs "Initialization
# complete" and still runs, then stops it (SIGTERM, exit status 0). Its log
# is $MB_DIR/<tag>.log, its stderr $MB_DIR/<tag>.stderr. On failure prints
# why and returns 1.
cd_try() {
  local tag=$1 log=$MB_DIR/$1.log pid rc=0
  : >"$log"
  testlog_dropin "$log"
  collectd -t -C /etc/collectd/collectd.conf >"$MB_DIR/$tag.t.stderr" 2>&1 || {
    echo "collectd -t fails: $(cat "$MB_DIR/$tag.t.stderr")"
    return 1
  }
  # The private namespace: the daemon's tmpfs mounts vanish with it.
  unshare -m --propagation private sh -c '
    mount -t tmpfs membal-test /var/lib/collectd &&
    mount -t tmpfs membal-test /run &&
    exec /usr/sbin/collectd -f -C /etc/collectd/collectd.conf' \
    >"$MB_DIR/$tag.stderr" 2>&1 &
  pid=$!
  MB_PIDS+=("$pid")
  up() { grep -q 'Initialization complete, entering read-loop' "$log" || ! kill -0 "$pid"; }
  mb_wait_for 60 up || {
    echo "collectd neither initialised nor exited within 60 s"
    return 1
  }
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" || rc=$?
    echo "collectd exited at start (status $rc): $(cat "$MB_DIR/$tag.stderr") $(tail -n 5 "$log")"
    return 1
  }
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || {
    echo "collectd exit status $rc after SIGTERM"
    return 1
  }
}
cd_start() {
  local why
  why=$(cd_try "$1") || mb_fail "$1: $why"
  mb_log "ok: $1: collectd -t passes, collectd starts with the machine's configuration and stops cleanly"
}
loaded() { grep -q "plugin_load: plugin \"$1\" successfully loaded" "$MB_DIR/$2.log"; }

cd_start baseline
for p in vmmem membal guestmem; do
  if loaded "$p" baseline; then mb_fail "baseline: $p loaded before any package is installed"; fi
done

apt_do() { # apt_do <install|remove|purge> <args...>
  local what=$1
  shift
  apt-get "$what" -y --no-install-recommends -o DPkg::Lock::Timeout=600 "$@" >>"$MB_DIR/apt.log" 2>&1 ||
    mb_fail "apt-get $what $*: $(tail -n 15 "$MB_DIR/apt.log")"
  mb_log "ok: apt-get $what $*"
}

# round <tag> <deb> <package> <drop-in> <cp|ln> <remove|purge> <plugins...>
round() {
  local tag=$1 deb=$2 pkg=$3 dropin=$4 how=$5 action=$6
  shift 6
  local p shipped=/usr/share/membal/collectd.conf.d/$dropin
  local enabled=/etc/collectd/collectd.conf.d/$dropin
  apt_do install "$deb"
  test -f "$shipped" || mb_fail "$tag: $pkg does not ship $shipped"
  case $how in
  cp) cp "$shipped" "$enabled" ;;
  ln) ln -s "$shipped" "$enabled" ;;
  esac
  cd_start "$tag-enabled"
  for p in "$@"; do
    loaded "$p" "$tag-enabled" || mb_fail "$tag: $p not loaded with $pkg installed and $dropin enabled"
  done
  mb_log "ok: $tag: $* loaded through the enabled drop-in"

  apt_do "$action" "$pkg"
  for p in "$@"; do
    test ! -e "/usr/lib/collectd/$p.so" || mb_fail "$tag: $p.so still there after $action"
  done
  test -e "$enabled" || test -L "$enabled" || mb_fail "$tag: the admin's $enabled vanished"
  cd_start "$tag-$action"
  for p in "$@"; do
    if loaded "$p" "$tag-$action"; then mb_fail "$tag: $p loaded after $action"; fi
    # what the copy says now (the link is dangling: collectd skips it whole)
    if [ "$how" = cp ]; then
      grep -q "stat (/usr/share/membal/load/$p.conf) failed" "$MB_DIR/$tag-$action.stderr" ||
        mb_fail "$tag: collectd did not report the missing load/$p.conf"
    fi
  done
  mb_log "ok: $tag: after apt-get $action collectd -t passes and collectd starts, without $*"
  rm -f "$enabled"
}

# Control: a drop-in that loads vmmem directly, as the drop-ins did before,
# on a machine without membal-dom0. `collectd -t` passes yet the daemon does
# not start: the check above must catch exactly this.
printf 'LoadPlugin vmmem\n<Plugin vmmem>\n  Backend "libxl"\n</Plugin>\n' \
  >/etc/collectd/collectd.conf.d/dom0.conf
if why=$(cd_try control-direct-loadplugin); then
  mb_fail "control: collectd started with LoadPlugin of a missing plugin; the start check proves nothing"
fi
mb_log "ok: control: a direct LoadPlugin of a missing plugin is caught ($why)"
rm -f /etc/collectd/collectd.conf.d/dom0.conf

round dom0-cp-remove "$dom0_deb" membal-dom0 dom0.conf cp remove vmmem membal
round dom0-cp-purge "$dom0_deb" membal-dom0 dom0.conf cp purge vmmem membal
round kvm-cp-remove "$dom0_deb" membal-dom0 kvm.conf cp remove vmmem membal
round guest-cp-remove "$guest_deb" membal-guest guest.conf cp remove guestmem
round guest-ln-purge "$guest_deb" membal-guest guest.conf ln purge guestmem

# ------------------------------------------- /etc/collectd as it was found
pkg_restore
etc_sum >"$MB_DIR/etc-after.sum"
diff "$MB_DIR/etc-before.sum" "$MB_DIR/etc-after.sum" >&2 || mb_fail "/etc/collectd differs from before the test"
mb_log "ok: /etc/collectd restored as found"
mb_log "PASS"
