#!/bin/bash
# CI only: removes what earlier, killed test runs on this machine may have left behind (test daemons
# are SIGKILLed when a session ends): bridges and veths tagged by Strata, its iptables chains, and
# mounts under the temporary test roots. Never run this on a host with a Strata daemon you want to keep.
set -uo pipefail
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  if ip -d link show "$link" 2>/dev/null | grep -q 'alias strata:'; then ip link del "$link" 2>/dev/null; fi
done
for table in filter nat; do
  iptables -t "$table" -S 2>/dev/null | grep -E -- '-j STRATA-|comment "?strata:' | sed 's/^-A/-D/' |
    while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null; done
  for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N STRATA-/{print $2}'); do
    iptables -t "$table" -F "$chain" 2>/dev/null; iptables -t "$table" -X "$chain" 2>/dev/null
  done
done
awk '{print $5}' /proc/self/mountinfo | grep -E '^/tmp/strata-' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
exit 0
