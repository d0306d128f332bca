#!/usr/bin/env bash
# Pix's 19-hour migration in a minute, on this machine: a throwaway
# PostgreSQL (unless DSN is given), the stand-in app, `cutover watch` with the
# control tower on 127.0.0.1:8080, and an operator who goes through the phases.
# Exit status: cutover watch's (0 once every phase is green).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cutover="${CUTOVER:-cutover}"
work="$(mktemp -d /tmp/pix-watch-XXXXXX)"
state="$work/state"; mkdir -p "$state"; chmod 777 "$work" "$state"
app_port="${APP_PORT:-8099}"; tower="${LISTEN:-127.0.0.1:8080}"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n "${pgdata:-}" ]]; then as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
as_pg() { if [[ "$(id -u)" -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [[ -z "${DSN:-}" ]]; then
    pgbin="${PGBIN:-/usr/lib/postgresql/15/bin}"
    pgdata="$work/pg"; mkdir -p "$pgdata"; [[ "$(id -u)" -eq 0 ]] && chown postgres "$pgdata"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_pg "$pgbin/initdb" -D "$pgdata" -A trust -U postgres --no-sync >/dev/null
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -w -l "$work/pg.log" -o "-p $port -c listen_addresses=127.0.0.1 -k $work" start >/dev/null
    DSN="postgres://postgres@127.0.0.1:$port/postgres"
fi
psql -X -q "$DSN" -c "DROP TABLE IF EXISTS answers; CREATE TABLE answers (id serial PRIMARY KEY, body text); INSERT INTO answers (body) SELECT 'a' || g FROM generate_series(1, 20000) g"

python3 "$here/app.py" "$app_port" "$state" & pids+=($!)
echo 3 > "$state/containers"
# A client holds a connection, as the app did before the maintenance.
psql -X -q "$DSN" -c "select pg_sleep(4)" >/dev/null & pids+=($!)

# The plan as written, pointed at this scenario's app and database.
sed -e "s|^app = .*|app = \"http://127.0.0.1:$app_port\"|" -e "s|^dsn = .*|dsn = \"$DSN\"|" "$here/plan.toml" > "$work/plan.toml"
"$cutover" --state "$work/state.db" watch "$work/plan.toml" --listen "$tower" --output json > "$work/watch.json" &
watcher=$!
echo "control tower: http://$tower/ (the run page is linked there)"
sleep 2

run_id() { "$cutover" --state "$work/state.db" runs --output json | python3 -c 'import sys,json; print(json.load(sys.stdin)[-1]["id"])'; }
echo "operator: maintenance on, containers stopped, backups paused"
touch "$state/maintenance"; echo 0 > "$state/containers"
"$cutover" --state "$work/state.db" check "$(run_id)" backups-off --ok --note "paused in the console"
sleep 3
echo "operator: running the migration script"
bash "$here/migrate.sh" "$DSN" "$state/migration.log"
sleep 2
echo "operator: reopening"
rm -f "$state/maintenance"; echo 3 > "$state/containers"
wait "$watcher"
status=$?
python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); print("phases:", ", ".join(p["name"]+"="+p["state"] for p in v["phases"]), "· state:", v["state"])' "$work/watch.json"
exit $status
