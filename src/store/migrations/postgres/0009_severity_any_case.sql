-- The severity is compared in lower case: a critical alert written `Critical` or `CRITICAL`
-- wakes every listening alertcall too, and the sweep takes it in. The sweep's index keeps
-- only active alerts (few at any time), whatever their severity is written as.
CREATE OR REPLACE FUNCTION alertcall.notify_new_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF lower(NEW.severity::text) = 'critical' THEN
        PERFORM pg_notify('alertcall_new_alert', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE INDEX IF NOT EXISTS alertcall_active ON alerts (triggered_at) WHERE status = 'active';
DROP INDEX IF EXISTS alertcall_active_critical;
