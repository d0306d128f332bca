SET lock_timeout = '2s';

-- orders.id is at 1.9 billion. This rewrites the table under an ACCESS
-- EXCLUSIVE lock; `cutover pg bigint` does it online.
ALTER TABLE app.orders
    ALTER COLUMN id TYPE bigint;
