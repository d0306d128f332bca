-- cutover:no-transaction
-- Reclaim space after the big purge. All of these block the tables.
VACUUM FULL app.audit_log;
REINDEX TABLE app.orders;
CLUSTER app.sessions USING sessions_user_id_idx;
