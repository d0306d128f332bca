-- Speed up "my orders". (This locks writes on orders for the whole build.)
CREATE INDEX orders_user_id_idx
    ON app.orders (user_id);
