SET lock_timeout = '2s';
-- Validation takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
ALTER TABLE app.order_items VALIDATE CONSTRAINT order_items_product_fk;
ALTER TABLE app.order_items VALIDATE CONSTRAINT order_items_price_positive;
