-- Callbacks and signed calls (README: Callbacks and signed calls). A job may name a callback URL:
-- when it ends, a delivery job (tag "callback") is inserted in the same transaction, linked both
-- ways. A job's own signing secrets are sealed like its secret headers.
ALTER TABLE jobs ADD COLUMN callback_url text;
ALTER TABLE jobs ADD COLUMN sign boolean NOT NULL DEFAULT false;
ALTER TABLE jobs ADD COLUMN sealed_signing_secret text;
-- On a delivery: the job whose outcome it delivers.
ALTER TABLE jobs ADD COLUMN callback_of text COLLATE "C";
-- On a job with a callback URL, once it ended: its (latest) delivery.
ALTER TABLE jobs ADD COLUMN callback_job_id text COLLATE "C";
