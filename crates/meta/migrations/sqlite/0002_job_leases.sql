-- Leases on background jobs (upload purge, garbage collection), so that when
-- several nodes share the database each job runs on one node at a time. A
-- row exists while some node holds or last held the lease; an expired row is
-- simply taken over, and releasing deletes it.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    -- Seconds since the Unix epoch; the lease runs until, not including, it.
    expires_at INTEGER NOT NULL
);
