-- Orders reference users: creating the foreign key takes a SHARE ROW
-- EXCLUSIVE lock on app.users, so bound the wait.
SET lock_timeout = '3s';

CREATE TABLE app.orders (
    id          serial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES app.users (id),
    total_cents integer NOT NULL DEFAULT 0,
    note        varchar(200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_created_at_idx ON app.orders (created_at);
