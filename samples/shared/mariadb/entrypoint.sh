#!/bin/sh
# Like the official image: MYSQL_* (or their MARIADB_* aliases) set the root password, a database and a user.
# The data directory is initialised in the image already (a fresh named volume is a copy of it), so this only
# writes the settings as idempotent SQL that mariadbd runs at start (--init-file), then execs it as PID 1:
# mariadbd shuts down cleanly on SIGTERM.
set -eu

# quote VALUE: a SQL string literal body (backslash and quote escaped; sed only when needed: start is timed).
quote() {
    case $1 in
        *[\\\']*) printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g" ;;
        *) printf '%s' "$1" ;;
    esac
}
# sql LINE: one statement a line, verbatim (dash's echo would turn the doubled backslashes back into one).
sql() { printf '%s\n' "$1"; }
# ident VALUE: a backquoted identifier body.
ident() {
    case $1 in
        *\`*) printf '%s' "$1" | sed -e 's/`/``/g' ;;
        *) printf '%s' "$1" ;;
    esac
}

if [ "${1#-}" != "$1" ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi

[ -d /run/mysqld ] || { mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld; }
if [ "$(stat -c %U /var/lib/mysql)" != mysql ]; then chown -R mysql:mysql /var/lib/mysql; fi
if [ ! -d /var/lib/mysql/mysql ]; then  # an empty bind mount: initialise here instead of in the image
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
fi

# The MARIADB_ name wins over the MYSQL_ one, as in the official image.
root_password=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
database=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
user=${MARIADB_USER:-${MYSQL_USER:-}}
password=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
allow_empty=${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}
if [ -z "$root_password" ] && [ -z "$allow_empty" ]; then
    echo "entrypoint: set MYSQL_ROOT_PASSWORD (or MARIADB_ROOT_PASSWORD, or MYSQL_ALLOW_EMPTY_PASSWORD=1)" >&2
    exit 1
fi

init=/run/mysqld/init.sql
umask 077
{
    rp=$(quote "$root_password")
    # root: the unix socket (exec mariadb in the container) or the password, from anywhere (official default).
    sql "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$rp');"
    sql "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$rp';"
    sql "ALTER USER 'root'@'%' IDENTIFIED BY '$rp';"
    sql "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$database" ]; then
        sql "CREATE DATABASE IF NOT EXISTS \`$(ident "$database")\`;"
    fi
    if [ -n "$user" ] && [ "$user" != root ]; then
        u=$(quote "$user")
        p=$(quote "$password")
        sql "CREATE USER IF NOT EXISTS '$u'@'%' IDENTIFIED BY '$p';"
        sql "ALTER USER '$u'@'%' IDENTIFIED BY '$p';"
        if [ -n "$database" ]; then
            sql "GRANT ALL ON \`$(ident "$database")\`.* TO '$u'@'%';"
        fi
    fi
} >"$init"
chown mysql:mysql "$init"

shift
exec mariadbd --user=mysql --init-file="$init" "$@"
