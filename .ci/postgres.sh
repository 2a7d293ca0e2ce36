#!/usr/bin/env bash
# .ci/postgres.sh -- a local PostgreSQL server for StrataLab's `postgres` tests.
#
# Installs PostgreSQL from Debian apt (only when it is missing), starts the
# Debian cluster <newest version>/main on 127.0.0.1 (creating it when there is
# none), and creates -- idempotently -- the role `stratalab` (password
# `stratalab`) and the database `stratalab_test` owned by it.
#
# Two ways to use it:
#
#   * Run it by hand (as root, or as a user with sudo) to get a local test
#     database.  All progress goes to stderr; stdout is a single line
#         export STRATALAB_TEST_PG_URL=postgresql+psycopg://...
#     so this sets the variable in your shell:
#         eval "$(bash .ci/postgres.sh)"
#
#   * Source it from a script that runs under `set -euo pipefail` (.ci/run
#     does) and call `stratalab_pg_up`: it exports STRATALAB_TEST_PG_URL.
#     Sourcing defines functions only; it starts nothing by itself.
#
# Safe to rerun: an installed PostgreSQL is not reinstalled, a running cluster
# is left running (never restarted), the role's password and the database's
# owner are reset to the values below.
#
# Knobs (environment): STRATALAB_PG_ROLE, STRATALAB_PG_PASSWORD,
# STRATALAB_PG_DB (defaults: stratalab / stratalab / stratalab_test).

# ---------------------------------------------------------------------------
# Step banners with timings, shared with .ci/run.
# ---------------------------------------------------------------------------
_CI_STEP=""
_CI_STEP_T0=0

# ci_step "title" cmd args...  -- print a banner, run the command, print its time.
# The command runs as a plain command (not inside `if`/`||`), so `set -e`
# stays in force inside it; a failure is reported by ci_on_exit.
ci_step() {
    local title=$1
    shift
    _CI_STEP=$title
    _CI_STEP_T0=$SECONDS
    printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$title"
    "$@"
    printf '<== %s: done in %ss\n' "$title" "$((SECONDS - _CI_STEP_T0))"
    _CI_STEP=""
}

# EXIT trap: name the step that failed, and how long it ran.
ci_on_exit() {
    local rc=$?
    if [[ $rc -ne 0 && -n $_CI_STEP ]]; then
        printf '!!! %s: FAILED (exit %s) after %ss\n' \
            "$_CI_STEP" "$rc" "$((SECONDS - _CI_STEP_T0))" >&2
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------
# Privilege helpers: CI runs as root; a developer may run with sudo instead.
# ---------------------------------------------------------------------------
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Run as the `postgres` OS user, from / (psql and pg_ctlcluster complain when
# the current directory, e.g. /root, is unreadable for postgres).
as_postgres() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && sudo -u postgres -- "$@")
    fi
}

STRATALAB_PG_ROLE=${STRATALAB_PG_ROLE:-stratalab}
STRATALAB_PG_PASSWORD=${STRATALAB_PG_PASSWORD:-stratalab}
STRATALAB_PG_DB=${STRATALAB_PG_DB:-stratalab_test}
STRATALAB_PG_CLUSTER=main

# Is a PostgreSQL server package (and postgresql-common's tools) installed?
_pg_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 &&
        command -v pg_lsclusters >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

# Newest server version under /usr/lib/postgresql (e.g. "15").
_pg_version() {
    local d v best=""
    for d in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x $d ]] || continue
        v=${d#/usr/lib/postgresql/}
        v=${v%%/*}
        best+="$v"$'\n'
    done
    printf '%s' "$best" | sort -V | tail -n 1
}

# Field N (1-based) of `pg_lsclusters -h` for <ver>/main, or empty.
# Columns: Ver Cluster Port Status Owner Datadir Logfile
_pg_cluster_field() {
    local ver=$1 n=$2
    # (no early `exit` in awk: that could SIGPIPE pg_lsclusters under pipefail)
    { pg_lsclusters -h 2>/dev/null || true; } |
        awk -v v="$ver" -v c="$STRATALAB_PG_CLUSTER" -v n="$n" \
            '$1 == v && $2 == c && !seen { print $n; seen = 1 }'
}

# 1. apt: install PostgreSQL unless it is already there.
stratalab_pg_install() {
    if _pg_installed; then
        echo "PostgreSQL already installed ($(_pg_version)); skipping apt-get."
        return 0
    fi
    local t0=$SECONDS
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    echo "--- apt-get update: $((SECONDS - t0))s"
    t0=$SECONDS
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends -o Dpkg::Use-Pty=0 postgresql
    echo "--- apt-get install postgresql: $((SECONDS - t0))s"
    _pg_installed || {
        echo "apt-get finished but no PostgreSQL server binaries were found" >&2
        return 1
    }
}

# 2. Start <ver>/main on 127.0.0.1 (create it first when missing); wait for it.
stratalab_pg_start() {
    local ver port status i
    ver=$(_pg_version)
    [[ -n $ver ]] || { echo "no /usr/lib/postgresql/*/bin/postgres" >&2; return 1; }

    if [[ -z $(_pg_cluster_field "$ver" 3) ]]; then
        echo "No cluster $ver/$STRATALAB_PG_CLUSTER; creating it."
        # Debian defaults: peer auth on the socket, scram-sha-256 over TCP.
        as_root pg_createcluster "$ver" "$STRATALAB_PG_CLUSTER" -- \
            --auth-local=peer --auth-host=scram-sha-256
    fi

    # Listen on IPv4 loopback only (Debian's default 'localhost' adds ::1),
    # via a drop-in under conf.d/ (Debian's postgresql.conf has
    # include_dir = 'conf.d').  Not pg_conftool: its quoting of this value
    # differs between calls and can leave postgresql.conf unparsable.
    # Written every time (idempotent); it takes effect at the next start.
    local confdir=/etc/postgresql/$ver/$STRATALAB_PG_CLUSTER
    if grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" \
        "$confdir/postgresql.conf"; then
        printf '%s\n' "# Written by StrataLab's .ci/postgres.sh: TCP on IPv4 loopback only." \
            "listen_addresses = '127.0.0.1'" |
            as_postgres tee "$confdir/conf.d/stratalab-ci.conf" >/dev/null
    else
        echo "Note: $confdir/postgresql.conf has no include_dir 'conf.d';" \
            "keeping its listen_addresses (default 'localhost')."
    fi

    # The socket directory lives on /run, which may be a fresh tmpfs.
    as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql

    port=$(_pg_cluster_field "$ver" 3)
    status=$(_pg_cluster_field "$ver" 4)
    if [[ $status == online* ]]; then
        echo "Cluster $ver/$STRATALAB_PG_CLUSTER already running on port $port."
    else
        echo "Starting cluster $ver/$STRATALAB_PG_CLUSTER (port $port) as postgres."
        as_postgres pg_ctlcluster "$ver" "$STRATALAB_PG_CLUSTER" start
    fi

    for ((i = 0; i < 30; i++)); do
        if "/usr/lib/postgresql/$ver/bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            echo "pg_isready: 127.0.0.1:$port accepts connections."
            STRATALAB_PG_VERSION=$ver
            STRATALAB_PG_PORT=$port
            return 0
        fi
        sleep 1
    done
    echo "PostgreSQL $ver/$STRATALAB_PG_CLUSTER not ready on 127.0.0.1:$port after 30s." >&2
    echo "--- last lines of its log:" >&2
    as_root tail -n 30 "$(_pg_cluster_field "$ver" 7)" >&2 || true
    return 1
}

# 3. Role + database, idempotently (superuser `postgres` over the Unix socket,
#    peer auth).  psql interpolates :'var' before sending; format() quotes.
stratalab_pg_provision() {
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$STRATALAB_PG_PORT" -d postgres \
        -v role="$STRATALAB_PG_ROLE" -v pw="$STRATALAB_PG_PASSWORD" \
        -v db="$STRATALAB_PG_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'role', :'pw')
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role')
\gexec
SQL
    echo "Role '$STRATALAB_PG_ROLE' and database '$STRATALAB_PG_DB' are in place."
    local live
    live=$(as_postgres psql -X -At -p "$STRATALAB_PG_PORT" -d postgres \
        -c 'SHOW listen_addresses')
    if [[ $live != 127.0.0.1 ]]; then
        echo "Note: the running server listens on '$live'; 127.0.0.1-only applies" \
            "after: pg_ctlcluster $STRATALAB_PG_VERSION $STRATALAB_PG_CLUSTER restart"
    fi
}

# All of the above; exports STRATALAB_TEST_PG_URL.
stratalab_pg_up() {
    ci_step "postgres: apt install (skipped when present)" stratalab_pg_install
    ci_step "postgres: start cluster on 127.0.0.1" stratalab_pg_start
    ci_step "postgres: role '$STRATALAB_PG_ROLE' + database '$STRATALAB_PG_DB'" \
        stratalab_pg_provision
    export STRATALAB_TEST_PG_URL="postgresql+psycopg://$STRATALAB_PG_ROLE:$STRATALAB_PG_PASSWORD@127.0.0.1:$STRATALAB_PG_PORT/$STRATALAB_PG_DB"
    echo "STRATALAB_TEST_PG_URL=$STRATALAB_TEST_PG_URL"
}

# Run directly (not sourced): do it all, chatter on stderr, the export on stdout.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    trap ci_on_exit EXIT
    exec 3>&1 1>&2
    stratalab_pg_up
    printf 'export STRATALAB_TEST_PG_URL=%s\n' "$STRATALAB_TEST_PG_URL" >&3
fi
