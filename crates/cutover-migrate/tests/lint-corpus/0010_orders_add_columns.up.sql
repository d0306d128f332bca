SET LOCAL lock_timeout = '2s';

ALTER TABLE app.orders
    ADD COLUMN status     text NOT NULL,
    ADD COLUMN public_id  uuid DEFAULT gen_random_uuid(),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN currency   char(3) NOT NULL DEFAULT 'EUR';
