SET lock_timeout = '2s';
DROP INDEX IF EXISTS app.orders_legacy_idx;
DROP TABLE app.legacy_events CASCADE;
ALTER TABLE app.coupons RENAME TO promotions;
