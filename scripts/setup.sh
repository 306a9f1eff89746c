#!/bin/bash
# Installs everything Strata needs on Debian 12 (as root) and builds it. Idempotent: a second run only
# checks. Used by both README commands and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(crun runc conmon busybox-static iptables containernetworking-plugins catatonit tini tmux skopeo
  uidmap e2fsprogs procps iproute2 python3 make g++ ca-certificates curl docker-compose
  podman docker-registry)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The tests drive the real docker CLI; Debian's docker.io ships it. dockerd is never started by us:
# policy-rc.d keeps the package scripts from starting services.
if ! command -v docker >/dev/null 2>&1; then missing+=(docker.io); fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# A group whose members may use the daemon socket (mode 0660, root:strata).
getent group strata >/dev/null || groupadd --system strata

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # The lock file leaves out the other platforms' optional binaries of node-unix-socket (the registry
  # mirror here does not carry them); should npm ci still refuse it, a locked install is equivalent.
  npm ci --no-fund --no-audit || npm install --no-fund --no-audit --no-save
fi
npm run --silent build
