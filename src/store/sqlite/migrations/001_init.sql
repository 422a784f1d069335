-- Jobs, their tags, every attempt, and the latest result. Times are epoch milliseconds.
CREATE TABLE jobs (
  id               TEXT PRIMARY KEY,
  status           TEXT NOT NULL
                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  attempt          INTEGER NOT NULL DEFAULT 0,
  max_attempts     INTEGER NOT NULL,
  priority         INTEGER NOT NULL DEFAULT 0,
  run_at           INTEGER NOT NULL,
  scheduled_at     INTEGER,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  started_at       INTEGER,
  finished_at      INTEGER,
  expires_at       INTEGER,
  method           TEXT NOT NULL,
  url              TEXT NOT NULL,
  headers          TEXT NOT NULL,          -- JSON object
  params           TEXT NOT NULL,          -- JSON object
  body_kind        TEXT CHECK (body_kind IN ('json', 'bytes')),
  body             BLOB,
  timeout_ms       INTEGER NOT NULL,
  backoff_strategy TEXT NOT NULL,
  backoff_base_ms  INTEGER NOT NULL,
  ttl_ms           INTEGER,
  tags             TEXT NOT NULL,          -- JSON array; job_tags indexes it
  idempotency_key  TEXT,
  last_error       TEXT,
  lease_token      TEXT,
  lease_expires_at INTEGER
);

-- The claim order: priority high to low, then due time, then age.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE status = 'queued';
CREATE INDEX jobs_next_run ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_status ON jobs (status, id);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_tags (
  tag    TEXT NOT NULL,
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (tag, job_id)
) WITHOUT ROWID;
CREATE INDEX job_tags_job ON job_tags (job_id);

CREATE TABLE attempts (
  id              INTEGER PRIMARY KEY,
  job_id          TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  attempt         INTEGER NOT NULL,
  lease_token     TEXT NOT NULL,
  outcome         TEXT NOT NULL
                  CHECK (outcome IN ('running', 'succeeded', 'failed', 'canceled', 'interrupted', 'lost')),
  started_at      INTEGER NOT NULL,
  finished_at     INTEGER,
  response_status INTEGER,
  error_code      TEXT,
  error           TEXT,
  duration_ms     INTEGER,
  retryable       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX attempts_job ON attempts (job_id, id);

CREATE TABLE results (
  job_id           TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  attempt          INTEGER NOT NULL,
  response_status  INTEGER,
  response_headers TEXT,                   -- JSON object
  body             BLOB,
  body_encoding    TEXT CHECK (body_encoding IN ('json', 'text', 'base64')),
  truncated        INTEGER NOT NULL DEFAULT 0,
  error            TEXT,
  duration_ms      INTEGER NOT NULL,
  finished_at      INTEGER NOT NULL
);
