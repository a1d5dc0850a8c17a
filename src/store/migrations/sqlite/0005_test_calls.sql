-- Test calls (`alertcall test-call`): one row each, so that whichever instance receives the
-- provider's webhooks finds the call. They belong to no alert and are kept apart from
-- `calls`, so nothing that reads calls (history, analytics, escalation) ever sees them.
CREATE TABLE alertcall_test_calls (
    id TEXT PRIMARY KEY,
    person TEXT,
    to_number TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_call_id TEXT,
    -- The state and its rank (domain::test_call): an update applies only to a lower rank.
    state TEXT NOT NULL,
    state_rank INTEGER NOT NULL,
    reason TEXT,
    prompts INTEGER NOT NULL DEFAULT 0,
    requested_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
