SET lock_timeout = '2s';
-- Step 1 of 2: a check that new rows must satisfy, no scan.
ALTER TABLE app.users
    ADD CONSTRAINT users_name_not_null CHECK (name IS NOT NULL) NOT VALID;
