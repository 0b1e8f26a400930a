#!/bin/sh
# Like the official image: MYSQL_* (or their MARIADB_* aliases) set the root password, a database and a user.
# The data directory is initialised in the image already (a fresh named volume is a copy of it), so this only
# writes the settings as idempotent SQL that mariadbd runs at start (--init-file), then execs it as PID 1:
# mariadbd shuts down cleanly on SIGTERM.
set -eu

# setting NAME: the MARIADB_NAME value, else MYSQL_NAME, else empty.
setting() { eval "printf '%s' \"\${MARIADB_$1:-\${MYSQL_$1:-}}\""; }
# quote VALUE: a SQL string literal body (backslash and quote escaped).
quote() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }
# ident VALUE: a backquoted identifier body.
ident() { printf '%s' "$1" | sed -e 's/`/``/g'; }

if [ "${1#-}" != "$1" ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi

mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld
if [ "$(stat -c %U /var/lib/mysql)" != mysql ]; then chown -R mysql:mysql /var/lib/mysql; fi
if [ ! -d /var/lib/mysql/mysql ]; then  # an empty bind mount: initialise here instead of in the image
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
fi

root_password=$(setting ROOT_PASSWORD)
database=$(setting DATABASE)
user=$(setting USER)
password=$(setting PASSWORD)
allow_empty=$(setting ALLOW_EMPTY_PASSWORD)
if [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
    echo "entrypoint: set MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD, or MYSQL_ALLOW_EMPTY_PASSWORD=1)" >&2
    exit 1
fi

init=/run/mysqld/init.sql
umask 077
{
    rp=$(quote "$root_password")
    # root: the unix socket (exec mariadb in the container) or the password, from anywhere (official default).
    echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$rp');"
    echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$rp';"
    echo "ALTER USER 'root'@'%' IDENTIFIED BY '$rp';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$database" ]; then
        echo "CREATE DATABASE IF NOT EXISTS \`$(ident "$database")\`;"
    fi
    if [ -n "$user" ] && [ "$user" != root ]; then
        u=$(quote "$user")
        p=$(quote "$password")
        echo "CREATE USER IF NOT EXISTS '$u'@'%' IDENTIFIED BY '$p';"
        echo "ALTER USER '$u'@'%' IDENTIFIED BY '$p';"
        if [ -n "$database" ]; then
            echo "GRANT ALL ON \`$(ident "$database")\`.* TO '$u'@'%';"
        fi
    fi
} >"$init"
chown mysql:mysql "$init"

shift
exec mariadbd --user=mysql --init-file="$init" "$@"
