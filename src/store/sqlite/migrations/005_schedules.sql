-- Schedules (periodic jobs): a job template and a time rule; the maintenance leader enqueues a job
-- at each tick. Jobs carry the schedule and the tick they run for: one job per (schedule, tick),
-- whoever fires the tick and however often (a trigger's job has no tick).

CREATE TABLE schedules (
  id                 TEXT PRIMARY KEY,
  owner              TEXT,
  description        TEXT NOT NULL DEFAULT '',
  -- The job template as JSON (src/job/validate.ts EnqueueInput), secret header values left out.
  template           TEXT NOT NULL,
  -- The template's secret headers, sealed with the schedule id.
  sealed_headers     TEXT,
  cron               TEXT NOT NULL,
  time_zone          TEXT NOT NULL,
  jitter_ms          INTEGER NOT NULL DEFAULT 0,
  start_at           INTEGER,
  end_at             INTEGER,
  overlap_policy     TEXT NOT NULL,
  catch_up           TEXT NOT NULL,
  catch_up_window_ms INTEGER NOT NULL DEFAULT 0,
  paused             INTEGER NOT NULL DEFAULT 0,
  next_run_at        INTEGER,
  last_run_at        INTEGER,
  last_job_id        TEXT,
  buffered_tick      INTEGER,
  created_at         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE paused = 0;
CREATE INDEX schedules_owner ON schedules (owner, id);

ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
ALTER TABLE jobs ADD COLUMN schedule_tick INTEGER;
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, schedule_tick)
  WHERE schedule_tick IS NOT NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, id) WHERE schedule_id IS NOT NULL;
