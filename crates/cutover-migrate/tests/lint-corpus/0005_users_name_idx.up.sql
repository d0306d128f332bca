-- Forgot the header: CONCURRENTLY cannot run in the migration's transaction.
Create Index Concurrently users_name_idx On app.users (name);
