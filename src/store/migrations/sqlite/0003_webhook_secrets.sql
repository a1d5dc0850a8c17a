-- Secrets every instance sharing the database must agree on: the key that makes the
-- per-call webhook tokens (when no VONAGE_SIGNATURE_SECRET is set), and when the SMS
-- Inbound URL with its token was first used.
CREATE TABLE alertcall_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
