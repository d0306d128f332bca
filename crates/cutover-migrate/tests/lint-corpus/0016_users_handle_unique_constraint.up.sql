SET lock_timeout = '2s';
-- Attaching the index built in 0015 is a catalog change.
ALTER TABLE app.users ADD CONSTRAINT users_handle_key UNIQUE USING INDEX users_handle_key;
