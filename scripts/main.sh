#!/usr/bin/env bash
# The main job on the embedded defaults: bring up the LNMP sample (nginx + php-fpm + MariaDB) and show
# that it answers. Installs what it needs (scripts/bootstrap.sh); makes the Debian base image offline
# when no registry has it (`pycompose image bootstrap`, cached in /var/cache/pycompose); builds the
# sample's images; `pycompose up -d`. The port is 80 unless LNMP_HTTP_PORT is set (environment or
# samples/lnmp/.env). Stop it with: cd samples/lnmp && ../../.venv/bin/pycompose down
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
pycompose=$PWD/.venv/bin/pycompose
"$pycompose" image bootstrap debian:bookworm-slim -q >/dev/null
cd samples/lnmp
"$pycompose" config -q
"$pycompose" up -d --build --wait
port=${LNMP_HTTP_PORT:-$(sed -n 's/^LNMP_HTTP_PORT=//p' .env)}
url="http://localhost:${port:-80}/"
curl -fsS --retry 10 --retry-delay 1 --retry-all-errors "$url"
echo "LNMP is up: open $url"
