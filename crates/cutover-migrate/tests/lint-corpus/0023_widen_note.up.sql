SET lock_timeout = '2s';
-- ALTER TYPE … ADD VALUE runs in a transaction on PostgreSQL 12+.
ALTER TYPE app.order_state ADD VALUE IF NOT EXISTS 'refunded';
-- varchar(200) → text: no rewrite, but the linter cannot see the old type.
ALTER TABLE app.orders ALTER COLUMN note TYPE text;
