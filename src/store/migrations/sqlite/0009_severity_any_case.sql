-- The severity is compared in lower case, so that `Critical` and `CRITICAL` are paged too. The
-- sweep's index keeps only active alerts (few at any time), whatever their severity is
-- written as. (SQLite has no notify trigger: a PRAGMA data_version watch does its job.)
CREATE INDEX IF NOT EXISTS alertcall_active ON alerts (triggered_at) WHERE status = 'active';
DROP INDEX IF EXISTS alertcall_active_critical;
