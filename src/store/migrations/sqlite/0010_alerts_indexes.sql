-- Analytics: the alerts triggered in a range, by the time as the queries read it (julianday
-- reads the texts the hospital writes; an unreadable one is NULL, also found here).
CREATE INDEX IF NOT EXISTS alertcall_alerts_time ON alerts (julianday(triggered_at));
