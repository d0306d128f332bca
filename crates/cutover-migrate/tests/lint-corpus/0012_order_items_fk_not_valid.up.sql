SET lock_timeout = '2s';
ALTER TABLE app.order_items
    ADD CONSTRAINT order_items_product_fk FOREIGN KEY (product_id)
        REFERENCES app.products (id) NOT VALID;
ALTER TABLE app.order_items
    ADD CONSTRAINT order_items_price_positive CHECK (price_cents >= 0) NOT VALID;
