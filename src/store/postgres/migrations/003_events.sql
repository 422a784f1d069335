-- The event stream (the same events as SQLite's 004, appended by triggers in the transaction of
-- each change). In PostgreSQL the order of a sequence is not the order of commits: a transaction
-- can take seq 10, another seq 11 and commit first, and a reader that saw 11 must not move past
-- 10. So each event carries the id of the transaction that wrote it (`txid`), and the stream is
-- read in (txid, seq) order, only up to the oldest transaction still running
-- (pg_snapshot_xmin): every transaction below it has ended, so no event can appear there later,
-- and a reader's cursor (txid, seq) never skips one. Events wait for older transactions to end,
-- which on this store's short transactions is a matter of milliseconds.

CREATE TABLE job_events (
  seq             bigserial PRIMARY KEY,
  txid            bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
  at              bigint NOT NULL,
  job_id          text COLLATE "C" NOT NULL,
  type            text NOT NULL,
  status          text NOT NULL,
  queue           text NOT NULL,
  owner           text,
  tags            text NOT NULL,
  attempt         integer,
  node            text,
  response_status integer,
  error_code      text,
  error           text,
  run_at          bigint,
  detail          text
);
CREATE INDEX job_events_cursor ON job_events (txid, seq);
CREATE INDEX job_events_at ON job_events (at);

CREATE TABLE event_horizon (
  id   integer PRIMARY KEY CHECK (id = 1),
  txid bigint NOT NULL,
  seq  bigint NOT NULL
);
INSERT INTO event_horizon (id, txid, seq) VALUES (1, 0, 0);

CREATE FUNCTION jq_event_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, run_at)
  VALUES (NEW.created_at, NEW.id,
    CASE NEW.state WHEN 'scheduled' THEN 'scheduled' ELSE 'queued' END,
    'queued', NEW.queue, NEW.owner, NEW.tags, NEW.run_at);
  RETURN NULL;
END $$;

CREATE FUNCTION jq_event_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state = NEW.state OR NEW.state = 'running'
     OR (OLD.state IN ('scheduled', 'waiting') AND NEW.state = 'available') THEN
    RETURN NULL;
  END IF;
  -- A job leaving running first tells how its attempt ended (closed in the same statement or
  -- before: an AFTER trigger sees the statement's changes), then where it went.
  IF OLD.state = 'running' THEN
    INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, attempt, node,
      response_status, error_code, error, detail)
    SELECT COALESCE(a.finished_at, NEW.updated_at), NEW.id, 'attempt_ended', 'running', NEW.queue,
      NEW.owner, NEW.tags, a.attempt, a.node, a.response_status, a.error_code, a.error, a.outcome
    FROM attempts a
    WHERE a.job_id = NEW.id AND a.attempt = OLD.attempt AND a.finished_at IS NOT NULL;
  END IF;
  INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, attempt, error_code,
    error, run_at)
  VALUES (NEW.updated_at, NEW.id,
    CASE
      WHEN NEW.state IN ('succeeded', 'failed', 'canceled') THEN NEW.state
      WHEN NEW.state = 'waiting' THEN 'waiting'
      WHEN NEW.state = 'scheduled' AND OLD.state = 'running' THEN 'retry_scheduled'
      WHEN NEW.state = 'scheduled' THEN 'scheduled'
      ELSE 'queued'
    END,
    CASE WHEN NEW.state IN ('available', 'scheduled', 'waiting') THEN 'queued' ELSE NEW.state END,
    NEW.queue, NEW.owner, NEW.tags, NEW.attempt, NEW.last_error_code, NEW.last_error, NEW.run_at);
  RETURN NULL;
END $$;

CREATE FUNCTION jq_event_running() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, attempt, node)
  SELECT NEW.started_at, NEW.job_id, 'running', 'running', j.queue, j.owner, j.tags, NEW.attempt,
    NEW.node
  FROM jobs j WHERE j.id = NEW.job_id;
  RETURN NULL;
END $$;

CREATE TRIGGER job_event_inserted AFTER INSERT ON jobs
  FOR EACH ROW EXECUTE FUNCTION jq_event_inserted();
CREATE TRIGGER job_event_changed AFTER UPDATE OF state ON jobs
  FOR EACH ROW EXECUTE FUNCTION jq_event_changed();
CREATE TRIGGER job_event_running AFTER INSERT ON attempts
  FOR EACH ROW EXECUTE FUNCTION jq_event_running();
