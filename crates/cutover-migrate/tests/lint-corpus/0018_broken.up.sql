SET lock_timeout = '2s';

ALTER TABLE app.orders ADD COLUMN shipped_at timestamptz;
ALTER TABLE app.orders ADD COLUMN shipped_by bigint
ALTER TABLE app.orders ADD COLUMN tracking text;
