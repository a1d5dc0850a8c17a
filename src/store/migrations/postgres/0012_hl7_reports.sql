-- HL7 status back to the alarm's source (PCD-05 ORA^R41): each report, rendered when queued,
-- kept until the Alarm Reporter acknowledged it, so that a peer away or a restart loses none.
-- `seq` is the order they go out in; `dedupe_key` makes one report of each happening (a
-- webhook delivered twice queues one).
CREATE TABLE alertcall.hl7_reports (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    alert_id text NOT NULL,
    status text NOT NULL,
    dedupe_key text NOT NULL UNIQUE,
    message text NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    sent_at timestamptz,
    last_error text
);
