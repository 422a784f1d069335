-- SQLite evaluates `x IN ('a', 'b', 'c')` (three constants or more) by building a temporary b-tree
-- of the constants, and a trigger builds it again on every row it fires for: a job's insert,
-- claim and finish built some 12 of them through these two triggers (EXPLAIN lists an
-- OpenEphemeral in each of their programs; callgrind of bench/store-cycle.ts spent about a fifth
-- of the store's instructions on creating and zeroing their pages). The same conditions written
-- as comparisons build none. `state` is NOT NULL, so NOT IN is the conjunction of `<>`.
-- The triggers are 003's and 007's with only those conditions rewritten.
DROP TRIGGER jobs_ended;
CREATE TRIGGER jobs_ended AFTER UPDATE OF state ON jobs
  WHEN (NEW.state = 'succeeded' OR NEW.state = 'failed' OR NEW.state = 'canceled')
   AND OLD.state <> 'succeeded' AND OLD.state <> 'failed' AND OLD.state <> 'canceled' BEGIN
  INSERT INTO job_throughput (minute, queue, state, n)
    VALUES (NEW.finished_at / 60000, NEW.queue, NEW.state, 1)
    ON CONFLICT (minute, queue, state) DO UPDATE SET n = n + 1;
END;

DROP TRIGGER job_event_changed;
CREATE TRIGGER job_event_changed AFTER UPDATE OF state ON jobs
  WHEN OLD.state <> NEW.state AND NEW.state <> 'running'
   AND NOT ((OLD.state = 'scheduled' OR OLD.state = 'waiting') AND NEW.state = 'available') BEGIN
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
      WHEN NEW.state = 'succeeded' OR NEW.state = 'failed' OR NEW.state = 'canceled' THEN NEW.state
      WHEN NEW.state = 'waiting' THEN 'waiting'
      WHEN (NEW.state = 'scheduled' OR NEW.state = 'available') AND OLD.state = 'running'
        THEN 'retry_scheduled'
      WHEN NEW.state = 'scheduled' THEN 'scheduled'
      ELSE 'queued'
    END,
    CASE WHEN NEW.state = 'available' OR NEW.state = 'scheduled' OR NEW.state = 'waiting'
      THEN 'queued' ELSE NEW.state END,
    NEW.queue, NEW.owner, NEW.tags, NEW.attempt, NEW.last_error_code, NEW.last_error, NEW.run_at);
END;
