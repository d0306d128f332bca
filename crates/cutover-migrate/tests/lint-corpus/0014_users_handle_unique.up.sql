SET lock_timeout = '2s';
ALTER TABLE app.users ADD COLUMN handle text;
-- Builds the unique index under ACCESS EXCLUSIVE.
ALTER TABLE app.users ADD CONSTRAINT users_handle_key UNIQUE (handle);
