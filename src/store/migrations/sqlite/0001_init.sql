-- The hospital's tables, for the embedded default (shaped like the Supabase schema).
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT PRIMARY KEY NOT NULL,
    name TEXT
);
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY NOT NULL,
    room_name TEXT
);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY NOT NULL DEFAULT (lower(
        hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2)
        || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2)
        || '-' || hex(randomblob(6)))),
    patient_id TEXT,
    room_id TEXT,
    severity TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    alert_type TEXT,
    title TEXT,
    message TEXT,
    triggered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    metadata TEXT DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS alertcall_active_critical
    ON alerts (triggered_at) WHERE severity = 'critical' AND status = 'active';

-- alertcall's own tables; timestamps are written by alertcall as
-- YYYY-MM-DDTHH:MM:SS.mmmZ so that text order is time order. While an instance works on a
-- page (lease_owner set), due_at is when its claim lapses and another may take it.
CREATE TABLE alertcall_pages (
    alert_id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL DEFAULT 0,
    policy TEXT,
    due_at TEXT,
    lease_owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX alertcall_pages_due ON alertcall_pages (due_at) WHERE due_at IS NOT NULL;

CREATE TABLE alertcall_calls (
    id TEXT PRIMARY KEY NOT NULL,
    alert_id TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    round INTEGER NOT NULL DEFAULT 0,
    person TEXT,
    provider TEXT NOT NULL,
    provider_call_id TEXT UNIQUE,
    to_number TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    prompts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL,
    initiated_at TEXT,
    answered_at TEXT,
    ended_at TEXT
);
CREATE INDEX alertcall_calls_alert ON alertcall_calls (alert_id, created_at);
CREATE INDEX alertcall_calls_created ON alertcall_calls (created_at);

CREATE TABLE alertcall_call_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT,
    call_id TEXT,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    detail TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE INDEX alertcall_call_events_alert ON alertcall_call_events (alert_id, id);

CREATE TABLE alertcall_sms (
    id TEXT PRIMARY KEY NOT NULL,
    alert_id TEXT NOT NULL,
    person TEXT,
    to_number TEXT NOT NULL,
    code TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_message_id TEXT UNIQUE,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX alertcall_sms_to ON alertcall_sms (to_number, created_at);
CREATE INDEX alertcall_sms_alert ON alertcall_sms (alert_id);
