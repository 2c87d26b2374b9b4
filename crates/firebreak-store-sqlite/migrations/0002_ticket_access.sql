-- Users granted access to a restricted ticket (PRODUCT.md §2: admins, cleared users and the
-- ticket's access list may see it).
CREATE TABLE ticket_access (
    ticket_id TEXT NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, username)
);
CREATE INDEX ticket_access_user ON ticket_access(username);
