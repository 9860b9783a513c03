#!/usr/bin/env bash
# Every configuration option the three plugins accept (the keys their
# config callbacks compare with strcasecmp, and the policy's option table in
# policy/options.c) is documented in the manual
# page collectd-membal(5) (docs/man/collectd-membal.pod, as B<Option>) and
# in a drop-in (collectd.conf.d/*.conf, as "Option" at the start of a
# setting or a commented one).
set -euo pipefail
src=${MEMBAL_SOURCE_DIR:?}
pod=$src/docs/man/collectd-membal.pod
fail=0 n=0
for plugin in guestmem vmmem membal; do
  opts=$(grep -oE 'strcasecmp\("[A-Za-z]+", (c|ci|child)->key\)' "$src/plugins/$plugin.c" |
    sed -E 's/strcasecmp\("([A-Za-z]+)".*/\1/' | sort -u)
  # membal also takes the policy's options, from policy/options.c's table
  if [ "$plugin" = membal ]; then
    opts=$(printf '%s\n' $opts $(sed -nE 's/.*\.name = "([A-Za-z]+)".*/\1/p' "$src/policy/options.c") | sort -u)
  fi
  [ -n "$opts" ] || { echo "FAIL: no options found in plugins/$plugin.c"; exit 1; }
  for o in $opts; do
    n=$((n + 1))
    if ! grep -qE "B<(E<lt>)?$o(E<gt>)?>" "$pod"; then
      echo "FAIL: $plugin option $o is not in collectd-membal(5)"
      fail=1
    fi
    if ! grep -qE "^[[:space:]]*#?[[:space:]]*<?$o[[:space:]>\"]" "$src"/collectd.conf.d/*.conf; then
      echo "FAIL: $plugin option $o is in no drop-in"
      fail=1
    fi
  done
done
echo "$n options checked"
[ "$fail" = 0 ] && echo "1 passed, 0 failed" || { echo "0 passed, 1 failed"; exit 1; }
