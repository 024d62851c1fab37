#!/usr/bin/env bash
# Make PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) available to the test suite.
# Starts them when installed but stopped; installs them with apt when missing and we are root.
# Outside CI a failure here is reported and the suite runs what it can (the PostgreSQL and
# Redis tests then say they were skipped); with CI=true nothing may be skipped, so it fails.
set -uo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379
ci=${CI:-}

say() { echo "ensure-services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

apt_install() {
  [ "$(id -u)" = 0 ] || { say "not root: cannot install $*"; return 1; }
  command -v apt-get >/dev/null || { say "no apt-get: cannot install $*"; return 1; }
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  return 1
}

ensure_postgres() {
  port_open $PG_PORT && return 0
  if ! command -v pg_ctlcluster >/dev/null; then
    say "PostgreSQL is not running and not installed; installing it"
    apt_install postgresql || return 1
  fi
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$version" ]; then say "no PostgreSQL cluster found"; return 1; fi
  # Trust local TCP connections, as the tests connect without a password.
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [ -w "$hba" ] && ! grep -q "nectar-tests" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust # nectar-tests\nhost all all ::1/128 trust # nectar-tests' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null ||
    pg_ctlcluster "$version" main start || return 1
  wait_port $PG_PORT || return 1
  # A freshly installed cluster has only the postgres role; the tests connect as postgres.
  return 0
}

ensure_redis() {
  port_open $REDIS_PORT && return 0
  if ! command -v redis-server >/dev/null; then
    say "Redis is not running and not installed; installing it"
    apt_install redis-server || return 1
  fi
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT --save "" \
    --appendonly no --dir /tmp --logfile /tmp/nectar-test-redis.log || return 1
  wait_port $REDIS_PORT
}

status=0
ensure_postgres || { say "PostgreSQL unavailable on $PG_HOST:$PG_PORT"; status=1; }
ensure_redis || { say "Redis unavailable on 127.0.0.1:$REDIS_PORT"; status=1; }
if [ $status -ne 0 ] && [ -n "$ci" ] && [ "$ci" != "false" ]; then
  say "CI=$ci: every test must run, so this is an error"
  exit 1
fi
exit 0
