#!/usr/bin/env bash
# Make sure RabbitMQ, PostgreSQL and Redis answer on localhost: start any that is down,
# apt-install any that is missing. Safe to run again and again.
set -euo pipefail

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # name port seconds
  for _ in $(seq 1 "$3"); do
    answers 127.0.0.1 "$2" && return 0
    sleep 1
  done
  echo "ensure-services: $1 does not answer on port $2" >&2
  return 1
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

# --- RabbitMQ -------------------------------------------------------------------------
if ! answers 127.0.0.1 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  echo "ensure-services: starting RabbitMQ" >&2
  rabbitmq-server -detached || true
  wait_for RabbitMQ 5672 90
fi
# The broker accepts TCP before it accepts logins: wait until it is fully booted.
if command -v rabbitmqctl >/dev/null; then
  timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

# --- PostgreSQL -----------------------------------------------------------------------
if ! answers 127.0.0.1 5432; then
  if ! ls /etc/postgresql >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  echo "ensure-services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL 5432 60
fi
# Tests connect as postgres with trust auth to the database `test`.
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  if command -v runuser >/dev/null; then
    runuser -u postgres -- psql -Atc "create database test" >/dev/null 2>&1 || true
  fi
fi

# --- Redis ----------------------------------------------------------------------------
if ! answers 127.0.0.1 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  echo "ensure-services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for Redis 6379 30
fi

# --- test tools -----------------------------------------------------------------------
# libfaketime: the fault tests run a worker whose wall clock is wrong.
if [ ! -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  apt_install faketime
fi
# Debian's Chromium: the review console's browser tests (tests/browser/, Playwright drives
# it with executable_path=/usr/bin/chromium; no browser download from Playwright's CDN).
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi

echo "ensure-services: RabbitMQ, PostgreSQL and Redis answer" >&2
