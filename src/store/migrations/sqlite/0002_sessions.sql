-- Dashboard sign-ins: only the SHA-256 of each session token is kept.
CREATE TABLE alertcall_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at TEXT NOT NULL
);
CREATE INDEX alertcall_sessions_expiry ON alertcall_sessions (expires_at);
CREATE INDEX IF NOT EXISTS alertcall_pages_policy ON alertcall_pages (policy);
-- The dashboard lists the calls still ringing or in progress on every refresh.
CREATE INDEX alertcall_calls_live ON alertcall_calls (alert_id)
    WHERE status IN ('pending', 'initiated', 'ringing', 'in_progress');
