-- Several nodes (only ever one on SQLite, but the same design): each node's heartbeat, the
-- maintenance leader's term, the node of each attempt, and the request digest that tells a
-- repeated submit from a conflicting one under one idempotency key.
ALTER TABLE attempts ADD COLUMN node TEXT;
ALTER TABLE jobs ADD COLUMN request_hash TEXT;

CREATE TABLE nodes (
  id           TEXT PRIMARY KEY,
  started_at   INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  version      TEXT NOT NULL,
  concurrency  INTEGER NOT NULL,
  in_flight    INTEGER NOT NULL
) WITHOUT ROWID;

-- One row while a node holds the maintenance leadership; `expires_at` ends an unrenewed term.
CREATE TABLE leader (
  name       TEXT PRIMARY KEY CHECK (name = 'maintenance'),
  node       TEXT NOT NULL,
  elected_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Readiness probes write here: a write that succeeds says the store accepts writes.
CREATE TABLE store_probe (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  at INTEGER NOT NULL
);
