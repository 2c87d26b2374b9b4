-- Users created by an external identity provider keep its stable subject (issuer + sub), so a
-- renamed or re-used provider name never signs in as someone else.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users(external_id);
