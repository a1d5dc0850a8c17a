-- Secrets every instance sharing the database must agree on: the key that makes the
-- per-call webhook tokens (when no VONAGE_SIGNATURE_SECRET is set), and when the SMS
-- Inbound URL with its token was first used.
CREATE TABLE alertcall.settings (
    name text PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
