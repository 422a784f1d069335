-- The event stream: every change of a job appended in the transaction of the change, by triggers,
-- so no code path can forget one. `seq` is the stream's cursor: SQLite has one writer, so the
-- order of `seq` is the order of commits, and a reader that has seen seq n has seen every event
-- before it.

CREATE TABLE job_events (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,
  at              INTEGER NOT NULL,
  job_id          TEXT NOT NULL,
  -- queued, scheduled, waiting, running, attempt_ended, retry_scheduled, succeeded, failed,
  -- canceled, expired, deleted, progress
  type            TEXT NOT NULL,
  -- The job's public status after the event.
  status          TEXT NOT NULL,
  queue           TEXT NOT NULL,
  owner           TEXT,
  tags            TEXT NOT NULL,
  attempt         INTEGER,
  node            TEXT,
  response_status INTEGER,
  error_code      TEXT,
  error           TEXT,
  run_at          INTEGER,
  -- progress: JSON {"phase": "connected" | "headers" | "body", "bytes": n}; attempt_ended: outcome
  detail          TEXT
);
CREATE INDEX job_events_at ON job_events (at);

-- The newest cursor the retention has deleted up to: a reader behind it has missed events.
CREATE TABLE event_horizon (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);
INSERT INTO event_horizon (id, seq) VALUES (1, 0);

CREATE TRIGGER job_event_inserted AFTER INSERT ON jobs BEGIN
  INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, run_at)
  VALUES (NEW.created_at, NEW.id,
    CASE NEW.state WHEN 'scheduled' THEN 'scheduled' ELSE 'queued' END,
    'queued', NEW.queue, NEW.owner, NEW.tags, NEW.run_at);
END;

-- Changes of state, but for the start of an attempt (its own event, with the node) and the
-- promotions of a scheduled or waiting job that has become due (it stays queued). A job leaving
-- `running` first tells how its attempt ended (its row is closed by then), then where it went.
CREATE TRIGGER job_event_changed AFTER UPDATE OF state ON jobs
  WHEN OLD.state <> NEW.state AND NEW.state <> 'running'
   AND NOT (OLD.state IN ('scheduled', 'waiting') AND NEW.state = 'available') BEGIN
  INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, attempt, node,
    response_status, error_code, error, detail)
  SELECT COALESCE(a.finished_at, NEW.updated_at), NEW.id, 'attempt_ended', 'running', NEW.queue,
    NEW.owner, NEW.tags, a.attempt, a.node, a.response_status, a.error_code, a.error, a.outcome
  FROM attempts a
  WHERE OLD.state = 'running' AND a.job_id = NEW.id AND a.attempt = OLD.attempt
    AND a.finished_at IS NOT NULL;
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
END;

CREATE TRIGGER job_event_running AFTER INSERT ON attempts BEGIN
  INSERT INTO job_events (at, job_id, type, status, queue, owner, tags, attempt, node)
  SELECT NEW.started_at, NEW.job_id, 'running', 'running', j.queue, j.owner, j.tags, NEW.attempt,
    NEW.node
  FROM jobs j WHERE j.id = NEW.job_id;
END;
