#!/usr/bin/env bash
# The migration script Pix ran, in miniature: an int→bigint change of
# answers.id, logging "<step> - In progress/Done" and "alive" every second.
set -euo pipefail
dsn="$1"; log="$2"
say() { echo "$*" >> "$log"; }
( while sleep 1; do echo alive >> "$log"; done ) &
beat=$!
trap 'kill $beat 2>/dev/null' EXIT
echo alive >> "$log"
step() {
    say "$1 - In progress"
    psql -X -q -v ON_ERROR_STOP=1 "$dsn" -c "$2" >/dev/null
    sleep 1
    say "$1 - Done"
}
step "add column" "ALTER TABLE answers ADD COLUMN id_new bigint"
step "backfill" "UPDATE answers SET id_new = id"
step "swap" "ALTER TABLE answers DROP CONSTRAINT answers_pkey; ALTER TABLE answers RENAME COLUMN id TO id_old; ALTER TABLE answers RENAME COLUMN id_new TO id; ALTER TABLE answers ADD PRIMARY KEY (id)"
step "cleanup" "ALTER TABLE answers DROP COLUMN id_old"
