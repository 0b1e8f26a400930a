#!/usr/bin/env bash
# The main job on the embedded defaults: bring up the LNMP sample (nginx + php-fpm + MariaDB) and show
# that it answers. Installs what it needs (scripts/bootstrap.sh); makes the Debian base image offline
# when no registry has it (`pycompose image bootstrap`, cached in /var/cache/pycompose); builds the
# sample's images; `pycompose up -d`. Stop it with: cd samples/lnmp && ../../.venv/bin/pycompose down
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
pycompose=$PWD/.venv/bin/pycompose
"$pycompose" image bootstrap debian:bookworm-slim -q >/dev/null
cd samples/lnmp
"$pycompose" config -q
"$pycompose" up -d --build --wait
port=$(sed -n 's/^HTTP_PORT=//p' .env)
echo "LNMP is up: http://127.0.0.1:${HTTP_PORT:-${port:-8080}}/"
curl -fsS --retry 10 --retry-delay 1 --retry-all-errors "http://127.0.0.1:${HTTP_PORT:-${port:-8080}}/"
echo
