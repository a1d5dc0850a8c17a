-- The severity is compared in lower case: a critical alert written `Critical` or `CRITICAL`
-- wakes every listening alertcall too, and the sweep takes it in. (The sweep's index, which
-- keeps only active alerts whatever their severity is written as, is built CONCURRENTLY by
-- migration 10.)
CREATE OR REPLACE FUNCTION alertcall.notify_new_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF lower(NEW.severity::text) = 'critical' THEN
        PERFORM pg_notify('alertcall_new_alert', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
