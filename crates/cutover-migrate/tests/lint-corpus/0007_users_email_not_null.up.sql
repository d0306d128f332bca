/* Every user has an email now (backfilled last week). */
ALTER TABLE app.users ALTER COLUMN email SET NOT NULL;
