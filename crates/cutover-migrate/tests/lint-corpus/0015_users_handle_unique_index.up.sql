
-- cutover:no-transaction
SET lock_timeout = '2s';
CREATE UNIQUE INDEX CONCURRENTLY users_handle_key ON app.users (handle);
