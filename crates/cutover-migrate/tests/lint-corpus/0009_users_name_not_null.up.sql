SET lock_timeout = '2s';
-- Step 2 of 2: validate (SHARE UPDATE EXCLUSIVE, writes go on), then
-- SET NOT NULL uses the validated check instead of scanning (PG 12+).
ALTER TABLE app.users VALIDATE CONSTRAINT users_name_not_null;
ALTER TABLE app.users ALTER COLUMN name SET NOT NULL;
ALTER TABLE app.users DROP CONSTRAINT users_name_not_null;
