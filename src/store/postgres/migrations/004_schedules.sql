-- Schedules (periodic jobs): a job template and a time rule; the maintenance leader enqueues a job
-- at each tick. Jobs carry the schedule and the tick they run for: one job per (schedule, tick),
-- whoever fires the tick and however often (a trigger's job has no tick).

CREATE TABLE schedules (
  id                 text COLLATE "C" PRIMARY KEY,
  owner              text,
  description        text NOT NULL DEFAULT '',
  -- The job template as JSON (src/job/validate.ts EnqueueInput), secret header values left out.
  template           text NOT NULL,
  -- The template's secret headers, sealed with the schedule id.
  sealed_headers     text,
  cron               text NOT NULL,
  time_zone          text NOT NULL,
  jitter_ms          bigint NOT NULL DEFAULT 0,
  start_at           bigint,
  end_at             bigint,
  overlap_policy     text NOT NULL,
  catch_up           text NOT NULL,
  catch_up_window_ms bigint NOT NULL DEFAULT 0,
  paused             boolean NOT NULL DEFAULT false,
  next_run_at        bigint,
  last_run_at        bigint,
  last_job_id        text,
  buffered_tick      bigint,
  created_at         bigint NOT NULL,
  updated_at         bigint NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE NOT paused;
CREATE INDEX schedules_owner ON schedules (owner, id);

ALTER TABLE jobs ADD COLUMN schedule_id text;
ALTER TABLE jobs ADD COLUMN schedule_tick bigint;
CREATE UNIQUE INDEX jobs_schedule_tick ON jobs (schedule_id, schedule_tick)
  WHERE schedule_tick IS NOT NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, id) WHERE schedule_id IS NOT NULL;
