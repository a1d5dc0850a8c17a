-- Dashboard sign-ins: only the SHA-256 of each session token is kept.
CREATE TABLE alertcall.sessions (
    token_hash text PRIMARY KEY,
    username text NOT NULL,
    role text NOT NULL,
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expiry ON alertcall.sessions (expires_at);
-- Call history filters by the page's policy (the unit).
CREATE INDEX IF NOT EXISTS pages_policy ON alertcall.pages (policy);
-- The dashboard lists the calls still ringing or in progress on every refresh.
CREATE INDEX calls_live ON alertcall.calls (alert_id)
    WHERE status IN ('pending', 'initiated', 'ringing', 'in_progress');
