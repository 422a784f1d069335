-- An attempt's end that puts the job back in the queue is a `retry_scheduled` event whether the
-- retry is due later (`scheduled`) or already due when the end is written (`available`, as with a
-- backoff shorter than the write, a rescued lease or a call interrupted by a shutdown); it read
-- `queued` in the second case. The function is 003's with that one branch changed.
CREATE OR REPLACE FUNCTION jq_event_changed() RETURNS trigger LANGUAGE plpgsql AS $$
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
      WHEN NEW.state IN ('scheduled', 'available') AND OLD.state = 'running' THEN 'retry_scheduled'
      WHEN NEW.state = 'scheduled' THEN 'scheduled'
      ELSE 'queued'
    END,
    CASE WHEN NEW.state IN ('available', 'scheduled', 'waiting') THEN 'queued' ELSE NEW.state END,
    NEW.queue, NEW.owner, NEW.tags, NEW.attempt, NEW.last_error_code, NEW.last_error, NEW.run_at);
  RETURN NULL;
END $$;
