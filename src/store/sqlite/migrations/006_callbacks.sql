-- Callbacks and signed calls (README: Callbacks and signed calls). A job may name a callback URL:
-- when it ends, a delivery job (tag "callback") is inserted in the same transaction, linked both
-- ways. A job's own signing secrets are sealed like its secret headers.
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
ALTER TABLE jobs ADD COLUMN sign INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN sealed_signing_secret TEXT;
-- On a delivery: the job whose outcome it delivers.
ALTER TABLE jobs ADD COLUMN callback_of TEXT;
-- On a job with a callback URL, once it ended: its (latest) delivery.
ALTER TABLE jobs ADD COLUMN callback_job_id TEXT;
