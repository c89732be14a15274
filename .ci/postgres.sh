# Sourced by .ci/run: start a throw-away PostgreSQL server on loopback and export its URL.
# Skipped (with a message) where no server binaries are installed.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -n "$pg_bin" ]; then
  pg_dir=$(mktemp -d /tmp/oncotwin-pg.XXXXXX)
  chown postgres "$pg_dir"
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # su runs in the caller's directory, which the postgres user may not be allowed to enter.
  (cd / && su postgres -c "$pg_bin/initdb -D $pg_dir/data -A trust -U postgres >/dev/null")
  (cd / && su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1' -w -l $pg_dir/log start >/dev/null")
  export ONCOTWIN_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$pg_port/postgres"
  echo "PostgreSQL started at $ONCOTWIN_TEST_POSTGRES_URL"
else
  echo "PostgreSQL server not installed: store tests run on SQLite only"
fi
