-- The PostgreSQL schema: the same tables, columns and meanings as the SQLite store's (see
-- src/store/rows.ts), so one conformance suite holds both. Times are epoch milliseconds (bigint),
-- JSON is kept as written (text), job ids sort bytewise (COLLATE "C": ULIDs order by time).
-- The runner sets search_path to the configured schema.

-- The store's clock: the database's, so that every node means the same by "now" (leases above
-- all). Tests inject their own time instead; statements read COALESCE(<injected>, jq_now()).
CREATE FUNCTION jq_now() RETURNS bigint LANGUAGE sql STABLE
  AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;

CREATE TABLE jobs (
  id                  text COLLATE "C" PRIMARY KEY,
  state               text NOT NULL CHECK (state IN
                        ('available', 'scheduled', 'waiting', 'running', 'succeeded', 'failed', 'canceled')),
  attempt             integer NOT NULL DEFAULT 0,
  max_attempts        integer NOT NULL,
  priority            integer NOT NULL DEFAULT 0,
  run_at              bigint NOT NULL,
  scheduled_at        bigint,
  created_at          bigint NOT NULL,
  updated_at          bigint NOT NULL,
  started_at          bigint,
  finished_at         bigint,
  expires_at          bigint,
  method              text NOT NULL,
  url                 text NOT NULL,
  headers             text NOT NULL,
  sealed_headers      text,
  secret_header_names text NOT NULL,
  params              text NOT NULL,
  body_kind           text CHECK (body_kind IN ('json', 'bytes')),
  body                bytea,
  timeout_ms          bigint NOT NULL,
  backoff_strategy    text NOT NULL,
  backoff_base_ms     bigint NOT NULL,
  ttl_ms              bigint,
  tags                text NOT NULL,
  idempotency_key     text,
  request_hash        text,
  follow_redirects    boolean NOT NULL DEFAULT false,
  max_redirects       integer NOT NULL,
  rate_limit_key      text,
  bucket              text NOT NULL,
  rate_reserved       boolean NOT NULL DEFAULT false,
  owner               text,
  last_error          text,
  lease_token         text,
  lease_expires_at    bigint
);

-- The claim order: priority high to low, then due time, then age. Only available jobs are in it,
-- so a claim reads the head of a small index however many jobs wait for their time or budget.
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'available';
CREATE INDEX jobs_scheduled ON jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_waiting ON jobs (bucket, priority DESC, run_at, id) WHERE state = 'waiting';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_owner ON jobs (owner, id) WHERE owner IS NOT NULL;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (COALESCE(owner, ''), idempotency_key)
  WHERE idempotency_key IS NOT NULL;

CREATE TABLE job_tags (
  tag    text NOT NULL,
  job_id text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (tag, job_id)
);
CREATE INDEX job_tags_job ON job_tags (job_id);

CREATE TABLE attempts (
  id              bigserial PRIMARY KEY,
  job_id          text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  attempt         integer NOT NULL,
  lease_token     text NOT NULL,
  outcome         text NOT NULL
                  CHECK (outcome IN ('running', 'succeeded', 'failed', 'canceled', 'interrupted', 'lost')),
  started_at      bigint NOT NULL,
  finished_at     bigint,
  response_status integer,
  error_code      text,
  error           text,
  duration_ms     bigint,
  retryable       boolean NOT NULL DEFAULT false,
  node            text
);
CREATE INDEX attempts_job ON attempts (job_id, id);

CREATE TABLE results (
  job_id           text COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  attempt          integer NOT NULL,
  response_status  integer,
  response_headers text,
  body             bytea,
  body_encoding    text CHECK (body_encoding IN ('json', 'text', 'base64')),
  truncated        boolean NOT NULL DEFAULT false,
  error            text,
  duration_ms      bigint NOT NULL,
  finished_at      bigint NOT NULL
);

-- Rate-limit clocks per bucket (GCRA; src/job/admission.ts). Claims of a limited bucket hold a
-- transaction-scoped advisory lock on it, so admission is serial per bucket across nodes.
CREATE TABLE rate_limits (
  bucket     text PRIMARY KEY,
  tat        bigint NOT NULL,
  actual_tat bigint NOT NULL
);

CREATE TABLE audit_events (
  id             bigserial PRIMARY KEY,
  at             bigint NOT NULL,
  principal      text,
  action         text NOT NULL,
  job_id         text COLLATE "C",
  remote_address text,
  protocol       text NOT NULL,
  outcome        text NOT NULL,
  detail         text
);
CREATE INDEX audit_at ON audit_events (at);
CREATE INDEX audit_job ON audit_events (job_id) WHERE job_id IS NOT NULL;

CREATE TABLE nodes (
  id           text PRIMARY KEY,
  started_at   bigint NOT NULL,
  heartbeat_at bigint NOT NULL,
  version      text NOT NULL,
  concurrency  integer NOT NULL,
  in_flight    integer NOT NULL
);

CREATE TABLE leader (
  name       text PRIMARY KEY CHECK (name = 'maintenance'),
  node       text NOT NULL,
  elected_at bigint NOT NULL,
  expires_at bigint NOT NULL
);

CREATE TABLE store_probe (
  id integer PRIMARY KEY CHECK (id = 1),
  at bigint NOT NULL
);
