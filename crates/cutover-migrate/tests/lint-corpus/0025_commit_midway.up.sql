SET lock_timeout = '2s';
-- Someone committed half-way, so what follows ran outside the migration's transaction.
ALTER TABLE app.orders ADD COLUMN note text;
COMMIT;
ALTER TABLE app.orders ADD COLUMN note_author text;
