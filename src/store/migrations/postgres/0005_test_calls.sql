-- Test calls (`alertcall test-call`): one row each, so that whichever instance receives the
-- provider's webhooks finds the call. They belong to no alert and are kept apart from
-- `calls`, so nothing that reads calls (history, analytics, escalation) ever sees them.
CREATE TABLE alertcall.test_calls (
    id text PRIMARY KEY,
    person text,
    to_number text NOT NULL,
    provider text NOT NULL,
    provider_call_id text,
    -- The state and its rank (domain::test_call): an update applies only to a lower rank.
    state text NOT NULL,
    state_rank integer NOT NULL,
    reason text,
    prompts integer NOT NULL DEFAULT 0,
    requested_by text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
