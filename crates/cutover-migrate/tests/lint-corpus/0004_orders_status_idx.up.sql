-- cutover:no-transaction
-- Built without blocking writes. If it fails it leaves an INVALID index:
-- DROP INDEX CONCURRENTLY it and run the migration again.
SET lock_timeout = '2s';
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_created_at_user_idx
    ON app.orders (created_at, user_id)
    WHERE total_cents > 0;
