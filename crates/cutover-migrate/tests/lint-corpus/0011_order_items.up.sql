-- Line items. The foreign key and the check are validated against every
-- existing row, under locks, and nothing bounds the wait.
ALTER TABLE app.order_items
    ADD CONSTRAINT order_items_order_fk
        FOREIGN KEY (order_id) REFERENCES app.orders (id);

ALTER TABLE app.order_items ADD CONSTRAINT order_items_qty_positive CHECK (quantity > 0);
