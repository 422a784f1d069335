-- Operating jobs and queues (the same tables as SQLite's 003): named queues with their settings,
-- a job's queue, host and last error code, indexes for per-queue claims, queue listings and
-- "finished since", counts by queue and state, per-minute throughput, and bulk operations.

ALTER TABLE jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN host text;
UPDATE jobs SET host = bucket WHERE rate_limit_key IS NULL;
ALTER TABLE jobs ADD COLUMN last_error_code text;

DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_queue ON jobs (queue, id);
CREATE INDEX jobs_finished ON jobs (state, finished_at, id) WHERE finished_at IS NOT NULL;

CREATE TABLE queues (
  name             text PRIMARY KEY,
  concurrency      integer,
  rate_interval_ms double precision,
  rate_burst       integer,
  max_attempts     integer,
  backoff_strategy text,
  backoff_base_ms  bigint,
  ttl_ms           bigint,
  paused           boolean NOT NULL DEFAULT false,
  created_at       bigint NOT NULL,
  updated_at       bigint NOT NULL
);
INSERT INTO queues (name, created_at, updated_at) VALUES ('default', 0, 0);

-- A queue's rate clock, apart from its settings so that claims advancing it (under an advisory
-- lock per queue) never lock the row enqueues read.
CREATE TABLE queue_rates (
  queue text PRIMARY KEY,
  tat   bigint NOT NULL
);

CREATE TABLE job_counts (
  queue text NOT NULL,
  state text NOT NULL,
  n     bigint NOT NULL,
  PRIMARY KEY (queue, state)
);
INSERT INTO job_counts (queue, state, n) SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;

CREATE TABLE job_throughput (
  minute bigint NOT NULL,
  queue  text NOT NULL,
  state  text NOT NULL,
  n      bigint NOT NULL,
  PRIMARY KEY (minute, queue, state)
);

-- Changes append deltas here instead of updating job_counts in place: one counter row per queue
-- and state would be a lock every node's transactions queue behind. Reads add the deltas to the
-- folded counts; the maintenance leader folds them every few seconds. Rows with a minute count
-- jobs that ended (throughput), rows without one are count deltas.
CREATE TABLE job_stat_deltas (
  id     bigserial PRIMARY KEY,
  queue  text NOT NULL,
  state  text NOT NULL,
  minute bigint,
  n      bigint NOT NULL
);

-- Statement-level triggers: one insert of aggregated deltas per statement, however many rows it
-- changed (a claim of ten jobs appends two rows, not twenty).
CREATE FUNCTION jq_counted_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_stat_deltas (queue, state, n)
    SELECT queue, state, count(*) FROM new_rows GROUP BY queue, state;
  RETURN NULL;
END $$;

CREATE FUNCTION jq_counted_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_stat_deltas (queue, state, minute, n)
    SELECT queue, state, minute, sum(n) FROM (
      SELECT o.queue, o.state, NULL::bigint AS minute, -1 AS n
        FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE o.state <> w.state OR o.queue <> w.queue
      UNION ALL
      SELECT w.queue, w.state, NULL::bigint, 1
        FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE o.state <> w.state OR o.queue <> w.queue
      UNION ALL
      SELECT w.queue, w.state, w.finished_at / 60000, 1
        FROM old_rows o JOIN new_rows w ON w.id = o.id
        WHERE w.state IN ('succeeded', 'failed', 'canceled')
          AND o.state NOT IN ('succeeded', 'failed', 'canceled')
    ) d
    GROUP BY queue, state, minute
    HAVING sum(n) <> 0;
  RETURN NULL;
END $$;

CREATE FUNCTION jq_counted_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_stat_deltas (queue, state, n)
    SELECT queue, state, -count(*) FROM old_rows GROUP BY queue, state;
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_counted_insert AFTER INSERT ON jobs
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jq_counted_insert();
CREATE TRIGGER jobs_counted_update AFTER UPDATE ON jobs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION jq_counted_update();
CREATE TRIGGER jobs_counted_delete AFTER DELETE ON jobs
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION jq_counted_delete();

CREATE TABLE operations (
  id              text PRIMARY KEY,
  kind            text NOT NULL CHECK (kind IN ('cancel', 'retry', 'delete')),
  filter          text NOT NULL,
  overrides       text,
  owner           text,
  principal       text,
  state           text NOT NULL CHECK (state IN ('running', 'succeeded', 'canceled', 'failed')),
  estimate        bigint NOT NULL,
  estimate_capped boolean NOT NULL DEFAULT false,
  examined        bigint NOT NULL DEFAULT 0,
  affected        bigint NOT NULL DEFAULT 0,
  upper_id        text COLLATE "C" NOT NULL,
  cursor          text COLLATE "C",
  error           text,
  created_at      bigint NOT NULL,
  updated_at      bigint NOT NULL,
  finished_at     bigint
);
CREATE INDEX operations_running ON operations (created_at) WHERE state = 'running';
