DROP INDEX app.orders_created_at_user_idx;
