-- HL7 status back to the alarm's source (PCD-05 ORA^R41): each report, rendered when queued,
-- kept until the Alarm Reporter acknowledged it, so that a peer away or a restart loses none.
-- `seq` is the order they go out in; `dedupe_key` makes one report of each happening (a
-- webhook delivered twice queues one).
CREATE TABLE alertcall_hl7_reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    alert_id TEXT NOT NULL,
    status TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT
);
