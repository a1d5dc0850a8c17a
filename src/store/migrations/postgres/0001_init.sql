-- The hospital's own tables, created only when absent (Supabase already has them).
CREATE TABLE IF NOT EXISTS patients (
    patient_id text PRIMARY KEY,
    name text
);
CREATE TABLE IF NOT EXISTS rooms (
    room_id text PRIMARY KEY,
    room_name text
);
CREATE TABLE IF NOT EXISTS alerts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id text,
    room_id text,
    severity text NOT NULL,
    status text NOT NULL DEFAULT 'active',
    alert_type text,
    title text,
    message text,
    triggered_at timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    metadata jsonb DEFAULT '{}'::jsonb
);

-- Lets the sweep find unpaged critical alerts without scanning the whole table.
CREATE INDEX IF NOT EXISTS alertcall_active_critical
    ON alerts (triggered_at) WHERE severity = 'critical' AND status = 'active';

-- One row per alert being paged: the engine's durable state and timer. While an instance
-- works on a page (lease_owner set), due_at is when its claim lapses and another may take it.
CREATE TABLE alertcall.pages (
    alert_id text PRIMARY KEY,
    state text NOT NULL,
    step integer NOT NULL DEFAULT 0,
    round integer NOT NULL DEFAULT 0,
    policy text,
    due_at timestamptz,
    lease_owner text,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX pages_due ON alertcall.pages (due_at) WHERE due_at IS NOT NULL;

-- One row per call attempt.
CREATE TABLE alertcall.calls (
    id text PRIMARY KEY,
    alert_id text NOT NULL,
    step integer NOT NULL DEFAULT 0,
    round integer NOT NULL DEFAULT 0,
    person text,
    provider text NOT NULL,
    provider_call_id text UNIQUE,
    to_number text NOT NULL,
    status text NOT NULL,
    message text NOT NULL,
    prompts integer NOT NULL DEFAULT 0,
    error text,
    created_at timestamptz NOT NULL,
    initiated_at timestamptz,
    answered_at timestamptz,
    ended_at timestamptz
);
CREATE INDEX calls_alert ON alertcall.calls (alert_id, created_at);
CREATE INDEX calls_created ON alertcall.calls (created_at);

-- Every webhook and every action: the append-only audit trail.
CREATE TABLE alertcall.call_events (
    id bigserial PRIMARY KEY,
    alert_id text,
    call_id text,
    source text NOT NULL,
    kind text NOT NULL,
    dedupe_key text UNIQUE,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL
);
CREATE INDEX call_events_alert ON alertcall.call_events (alert_id, id);

-- A new critical alert wakes every listening alertcall within milliseconds.
CREATE OR REPLACE FUNCTION alertcall.notify_new_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.severity = 'critical' THEN
        PERFORM pg_notify('alertcall_new_alert', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS alertcall_notify_new_alert ON alerts;
CREATE TRIGGER alertcall_notify_new_alert
    AFTER INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION alertcall.notify_new_alert();

-- One row per text message (SMS fallback), with the code a reply must carry.
CREATE TABLE alertcall.sms (
    id text PRIMARY KEY,
    alert_id text NOT NULL,
    person text,
    to_number text NOT NULL,
    code text NOT NULL,
    provider text NOT NULL,
    provider_message_id text UNIQUE,
    status text NOT NULL,
    body text NOT NULL,
    error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX sms_to ON alertcall.sms (to_number, created_at);
CREATE INDEX sms_alert ON alertcall.sms (alert_id);

-- An alert acknowledged or resolved outside alertcall (the hospital app, the dashboard) wakes
-- alertcall too, so calls still ringing for it stop at once. An empty payload means "sweep".
CREATE OR REPLACE FUNCTION alertcall.notify_alert_closed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('alertcall_new_alert', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS alertcall_notify_alert_closed ON alerts;
CREATE TRIGGER alertcall_notify_alert_closed
    AFTER UPDATE OF status ON alerts FOR EACH ROW
    WHEN (OLD.status = 'active' AND NEW.status IS DISTINCT FROM 'active'
          -- alertcall's own acknowledgements (by phone or SMS) already stop the rest.
          AND coalesce(NEW.acknowledged_by, '') NOT LIKE 'phone:%'
          AND coalesce(NEW.acknowledged_by, '') NOT LIKE 'sms:%')
    EXECUTE FUNCTION alertcall.notify_alert_closed();
