# Sourced by .ci/run: start a throw-away PostgreSQL server on loopback and export its URL.
# Skipped (with a message) where no server binaries are installed.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -n "$pg_bin" ]; then
  pg_dir=$(mktemp -d /tmp/oncotwin-pg.XXXXXX)
  chown postgres "$pg_dir"
  su postgres -c "$pg_bin/initdb -D $pg_dir/data -A trust -U postgres >/dev/null"
  su postgres -c "$pg_bin/pg_ctl -D $pg_dir/data -o '-p 54329 -k $pg_dir -c listen_addresses=127.0.0.1' -w -l $pg_dir/log start >/dev/null"
  export ONCOTWIN_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:54329/postgres"
  echo "PostgreSQL started at $ONCOTWIN_TEST_POSTGRES_URL"
else
  echo "PostgreSQL server not installed: store tests run on SQLite only"
fi
