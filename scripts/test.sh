#!/bin/bash
# The whole test suite: set-up (packages, npm ci, build), lint, then every unit and integration test
# with Node's test runner. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx biome check .
export DOCKER_BUILDKIT=0
# Daemons started by the tests never contact a registry off this machine (no DNS query leaves it).
export STRATA_LOOPBACK_ONLY=1
exec node --test --test-concurrency=2 --test-timeout=600000 dist/test/
