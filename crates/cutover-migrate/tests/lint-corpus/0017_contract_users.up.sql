-- cutover:lint-ignore M010, M011
-- The application stopped using fax and legacy_id two releases ago
-- (expand/contract), so this contraction is deliberate.
SET lock_timeout = '2s';
ALTER TABLE app.users DROP COLUMN fax;
ALTER TABLE app.users RENAME COLUMN legacy_id TO old_id;
ALTER TABLE app.users DROP COLUMN old_id;
