-- Operating jobs and queues: named queues with their settings, a job's queue, host and last error
-- code (filters), indexes for per-queue claims, queue listings and "finished since", maintained
-- counts by queue and state, per-minute throughput, and bulk operations that survive a restart.

ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
-- The URL's host, lowercase; jobs stored before this migration get their bucket when it was their
-- host (no rate_limit_key), else NULL.
ALTER TABLE jobs ADD COLUMN host TEXT;
UPDATE jobs SET host = bucket WHERE rate_limit_key IS NULL;
-- The error code of the latest failed attempt ("http_status", "timeout", ...).
ALTER TABLE jobs ADD COLUMN last_error_code TEXT;

-- Claims walk one queue's available jobs in priority, due time, age order.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available';
-- A queue's jobs newest first.
CREATE INDEX jobs_queue ON jobs (queue, id);
-- Finished jobs by state, latest first ("failed in the last hour").
CREATE INDEX jobs_finished ON jobs (state, finished_at, id) WHERE finished_at IS NOT NULL;

-- Settings of a named queue; NULL takes the node's JOBQUEUE_* default. `default` always exists.
CREATE TABLE queues (
  name                 TEXT PRIMARY KEY,
  concurrency          INTEGER,          -- calls in flight at most per node for this queue
  rate_interval_ms     REAL,             -- spacing of its calls (1000/n for n/s), all nodes together
  rate_burst           INTEGER,
  max_attempts         INTEGER,
  backoff_strategy     TEXT,
  backoff_base_ms      INTEGER,
  ttl_ms               INTEGER,
  paused               INTEGER NOT NULL DEFAULT 0,
  created_at           INTEGER NOT NULL,
  updated_at           INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO queues (name, created_at, updated_at) VALUES ('default', 0, 0);

-- A queue's rate clock (GCRA, as rate_limits' per bucket), apart from its settings so that claims
-- advancing it never lock the row enqueues read.
CREATE TABLE queue_rates (
  queue TEXT PRIMARY KEY,
  tat   INTEGER NOT NULL
) WITHOUT ROWID;

-- Jobs by queue and state, kept by triggers in the transaction of every change, so counting is a
-- read of a few rows however many jobs are stored.
CREATE TABLE job_counts (
  queue TEXT NOT NULL,
  state TEXT NOT NULL,
  n     INTEGER NOT NULL,
  PRIMARY KEY (queue, state)
) WITHOUT ROWID;
INSERT INTO job_counts (queue, state, n) SELECT queue, state, COUNT(*) FROM jobs GROUP BY queue, state;

-- Jobs that ended, per minute (finished_at / 60000), queue and final state.
CREATE TABLE job_throughput (
  minute INTEGER NOT NULL,
  queue  TEXT NOT NULL,
  state  TEXT NOT NULL,
  n      INTEGER NOT NULL,
  PRIMARY KEY (minute, queue, state)
) WITHOUT ROWID;

CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs BEGIN
  INSERT INTO job_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
    ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_counted_update AFTER UPDATE OF state, queue ON jobs
  WHEN OLD.state <> NEW.state OR OLD.queue <> NEW.queue BEGIN
  UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
  INSERT INTO job_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
    ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
END;
CREATE TRIGGER jobs_ended AFTER UPDATE OF state ON jobs
  WHEN NEW.state IN ('succeeded', 'failed', 'canceled')
   AND OLD.state NOT IN ('succeeded', 'failed', 'canceled') BEGIN
  INSERT INTO job_throughput (minute, queue, state, n)
    VALUES (NEW.finished_at / 60000, NEW.queue, NEW.state, 1)
    ON CONFLICT (minute, queue, state) DO UPDATE SET n = n + 1;
END;

-- Bulk actions over a filter (CancelJobs, RetryJobs, DeleteJobs): worked through in batches by the
-- maintenance leader, newest job first, from `cursor` down; a restart picks them up where they
-- were. Jobs created after the operation started (ids above `upper_id`) are not touched.
CREATE TABLE operations (
  id          TEXT PRIMARY KEY,
  kind        TEXT NOT NULL CHECK (kind IN ('cancel', 'retry', 'delete')),
  filter      TEXT NOT NULL,            -- JSON of the job filter
  overrides   TEXT,                     -- JSON (retry: max_attempts, scheduled_at)
  owner       TEXT,                     -- only this owner's jobs; NULL: every job
  principal   TEXT,
  state       TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'canceled', 'failed')),
  estimate    INTEGER NOT NULL,         -- matching jobs counted at the start (capped)
  estimate_capped INTEGER NOT NULL DEFAULT 0,
  examined    INTEGER NOT NULL DEFAULT 0,
  affected    INTEGER NOT NULL DEFAULT 0,
  upper_id    TEXT NOT NULL,
  cursor      TEXT,                     -- the last job id examined; NULL before the first batch
  error       TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  finished_at INTEGER
) WITHOUT ROWID;
CREATE INDEX operations_running ON operations (created_at) WHERE state = 'running';
