-- Jobs, their tags, every attempt, the latest result, rate-limit state and the audit log.
-- Times are epoch milliseconds.
--
-- A job's `state` refines its public status: `available` (due, claimable), `scheduled` (due at
-- run_at: a future scheduled_at, a retry backoff or a rate-limit reservation) and `waiting` (its
-- bucket is at its concurrency limit) all read as "queued". Only available jobs are in the claim
-- index, so jobs waiting for their time or their budget cost a claim nothing.
CREATE TABLE jobs (
  id                  TEXT PRIMARY KEY,
  state               TEXT NOT NULL CHECK (state IN
                        ('available', 'scheduled', 'waiting', 'running', 'succeeded', 'failed', 'canceled')),
  attempt             INTEGER NOT NULL DEFAULT 0,
  max_attempts        INTEGER NOT NULL,
  priority            INTEGER NOT NULL DEFAULT 0,
  run_at              INTEGER NOT NULL,
  scheduled_at        INTEGER,
  created_at          INTEGER NOT NULL,
  updated_at          INTEGER NOT NULL,
  started_at          INTEGER,
  finished_at         INTEGER,
  expires_at          INTEGER,
  method              TEXT NOT NULL,
  url                 TEXT NOT NULL,
  headers             TEXT NOT NULL,          -- JSON object of the non-secret headers
  sealed_headers      TEXT,                   -- the secret headers, AES-256-GCM sealed
  secret_header_names TEXT NOT NULL,          -- JSON array of their (lowercase) names
  params              TEXT NOT NULL,          -- JSON object
  body_kind           TEXT CHECK (body_kind IN ('json', 'bytes')),
  body                BLOB,
  timeout_ms          INTEGER NOT NULL,
  backoff_strategy    TEXT NOT NULL,
  backoff_base_ms     INTEGER NOT NULL,
  ttl_ms              INTEGER,
  tags                TEXT NOT NULL,          -- JSON array; job_tags indexes it
  idempotency_key     TEXT,
  follow_redirects    INTEGER NOT NULL DEFAULT 0,
  max_redirects       INTEGER NOT NULL,
  rate_limit_key      TEXT,
  bucket              TEXT NOT NULL,          -- rate_limit_key, or the URL's host
  rate_reserved       INTEGER NOT NULL DEFAULT 0, -- holds a rate slot reserved at run_at
  owner               TEXT,                   -- the submitting principal; NULL without auth
  last_error          TEXT,
  lease_token         TEXT,
  lease_expires_at    INTEGER
);

-- The claim order: priority high to low, then due time, then age.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_waiting ON jobs (bucket, priority DESC, run_at, id) WHERE state = 'waiting';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_state ON jobs (state, id);
-- Only owned jobs (auth on) need it: without auth every job's owner is NULL and costs nothing here.
CREATE INDEX jobs_owner ON jobs (owner, id) WHERE owner IS NOT NULL;
-- Idempotency keys are per owner: one principal's key never names another's job.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (COALESCE(owner, ''), idempotency_key)
  WHERE idempotency_key IS NOT NULL;

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

-- Rate-limit state per bucket (GCRA): `tat`, the next free slot in the plan (reservations move it
-- ahead), and `actual_tat`, the next free slot after the calls really made. Kept here so that
-- limits hold across restarts, and across nodes once several share a database.
CREATE TABLE rate_limits (
  bucket     TEXT PRIMARY KEY,
  tat        INTEGER NOT NULL,
  actual_tat INTEGER NOT NULL
) WITHOUT ROWID;

-- Every mutating call and every denied call.
CREATE TABLE audit_events (
  id             INTEGER PRIMARY KEY,
  at             INTEGER NOT NULL,
  principal      TEXT,
  action         TEXT NOT NULL,
  job_id         TEXT,
  remote_address TEXT,
  protocol       TEXT NOT NULL,
  outcome        TEXT NOT NULL,
  detail         TEXT
);
CREATE INDEX audit_at ON audit_events (at);
CREATE INDEX audit_job ON audit_events (job_id) WHERE job_id IS NOT NULL;
