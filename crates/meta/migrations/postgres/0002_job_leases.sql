-- Leases on background jobs, as in migrations/sqlite/0002_job_leases.sql.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    -- Seconds since the Unix epoch; the lease runs until, not including, it.
    expires_at BIGINT NOT NULL
);
