-- no-transaction
-- Indexes on the hospital's `alerts`, built CONCURRENTLY so that its app goes on writing
-- alerts during the build (a plain CREATE INDEX holds every insert until it is done, seconds
-- on a year of alerts). Postgres refuses that inside a transaction: this file runs one
-- statement at a time (`postgres::migrate_outside_transaction`), and an index that an
-- interrupted build left invalid is dropped and built again.

-- The sweep's: active alerts (few at any time), whatever their severity is written as.
CREATE INDEX CONCURRENTLY IF NOT EXISTS alertcall_active ON alerts (triggered_at)
    WHERE status = 'active';
DROP INDEX CONCURRENTLY IF EXISTS alertcall_active_critical;
-- Analytics: the alerts triggered in a range (and those whose time is NULL).
CREATE INDEX CONCURRENTLY IF NOT EXISTS alertcall_alerts_triggered ON alerts (triggered_at);
