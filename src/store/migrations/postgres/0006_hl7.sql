-- HL7 alarm intake: the alert each alarm instance became (per sending application), and the
-- message control ids already taken, so that a resent message is acknowledged again and
-- never applied twice.
CREATE TABLE alertcall.hl7_alarms (
    source text NOT NULL,
    alarm_id text NOT NULL,
    alert_id text NOT NULL,
    phase text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (source, alarm_id)
);
CREATE TABLE alertcall.hl7_messages (
    source text NOT NULL,
    control_id text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (source, control_id)
);
