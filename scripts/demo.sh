#!/bin/bash
# The main job, on the embedded defaults: a base image made from the host's busybox, an image built on
# it (which only references the base's layer), a container run from it, a push to a Strata registry
# on 127.0.0.1:5000, and a pull into a second engine that fetches the base too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
STRATA="node $PWD/bin/strata"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "engine: default root /var/lib/strata, socket /run/strata/strata.sock (started on demand)"
$STRATA version

say "base image from the host's static busybox"
bash scripts/busybox-rootfs.sh | $STRATA import -c 'CMD ["sh"]' - demo/busybox:base
$STRATA images

say "an image built on the base (adds one layer, references the base's)"
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM demo/busybox:base
RUN mkdir -p /app && echo 'hello from a stacked image' > /app/greeting
ENV GREETING_FILE=/app/greeting
CMD ["sh", "-c", "cat $GREETING_FILE; echo layers: $(ls / | wc -l) top-level entries"]
DOCKERFILE
DOCKER_HOST=unix:///run/strata/strata.sock DOCKER_BUILDKIT=0 docker build -q -t demo/app:1 "$ctx"
$STRATA history demo/app:1

say "run it"
$STRATA run --rm demo/app:1

say "push to a Strata registry on 127.0.0.1:5000"
regroot=$(mktemp -d)
$STRATA registry serve --root "$regroot" --addr 127.0.0.1:5000 >/tmp/strata-demo-registry.log 2>&1 &
regpid=$!
trap 'kill $regpid 2>/dev/null; rm -rf "$ctx" "$regroot"' EXIT
for _ in $(seq 1 50); do curl -fs http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break; sleep 0.1; done
$STRATA tag demo/app:1 127.0.0.1:5000/demo/app:1
$STRATA push 127.0.0.1:5000/demo/app:1

say "pull into a second engine (its own root): it fetches the base layer too"
root2=$(mktemp -d)
$STRATA daemon --root "$root2/root" --socket "$root2/strata.sock" >/tmp/strata-demo-daemon2.log 2>&1 &
d2=$!
trap 'kill $regpid $d2 2>/dev/null; sleep 0.5; rm -rf "$ctx" "$regroot" "$root2"' EXIT
for _ in $(seq 1 100); do [ -S "$root2/strata.sock" ] && break; sleep 0.1; done
$STRATA -H "unix://$root2/strata.sock" pull 127.0.0.1:5000/demo/app:1
$STRATA -H "unix://$root2/strata.sock" run --rm 127.0.0.1:5000/demo/app:1
say "done"
