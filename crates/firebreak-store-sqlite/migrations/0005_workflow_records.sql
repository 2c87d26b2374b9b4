-- Workflow records of the response process (emergencies, meetings, reports...): typed JSON text.
CREATE TABLE workflow_records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    ticket_id TEXT REFERENCES tickets(id),
    parent_id TEXT,
    status TEXT NOT NULL,
    principal TEXT,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX workflow_records_ticket ON workflow_records(kind, ticket_id, created_at);
CREATE INDEX workflow_records_parent ON workflow_records(kind, parent_id, created_at);
CREATE INDEX workflow_records_status ON workflow_records(kind, status, principal);
