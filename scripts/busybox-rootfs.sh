#!/bin/bash
# Writes a tar of a minimal root file system built from the host's static busybox (package
# busybox-static) to stdout: /bin/busybox plus one symlink per applet, /etc/passwd and /etc/group,
# and the usual empty directories. `docker import` / `strata import` turns it into an image.
set -euo pipefail
BUSYBOX=${BUSYBOX:-/bin/busybox}
if ! "$BUSYBOX" --list >/dev/null 2>&1; then
  echo "busybox-rootfs: $BUSYBOX is not a working busybox (install busybox-static)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
r="$work/rootfs"
mkdir -p "$r"/{bin,sbin,etc,root,tmp,proc,sys,dev,var,home,usr/bin,usr/sbin}
chmod 1777 "$r/tmp"
chmod 700 "$r/root"
cp "$BUSYBOX" "$r/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
done
cat >"$r/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
PASSWD
cat >"$r/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
wheel:x:10:root
nogroup:x:65534:
app:x:1000:
GROUP
mkdir -p "$r/home/app" && chown 1000:1000 "$r/home/app"
# Fixed times and sorted names make the same busybox give the same layer digest every time.
tar --sort=name --mtime='2024-01-01 00:00:00Z' --numeric-owner \
  --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
  -C "$r" -cf - .
