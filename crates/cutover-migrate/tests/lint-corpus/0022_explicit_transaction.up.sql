BEGIN;
SET LOCAL lock_timeout = '2s';
ALTER TABLE app.orders ADD COLUMN gift boolean NOT NULL DEFAULT false;
COMMIT;
