-- Users and their sessions. New tables are empty and unused, so building
-- their indexes inside the migration's transaction is fine.
CREATE TABLE app.users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL,
    name        varchar(100),
    created_at  timestamptz NOT NULL DEFAULT now()
);

create unique index users_email_key on app.users (lower(email));

CREATE TABLE app.sessions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    bigint NOT NULL REFERENCES app.users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON app.sessions (user_id);
ALTER TABLE app.sessions ADD CONSTRAINT sessions_expiry_check CHECK (expires_at > '2020-01-01');
