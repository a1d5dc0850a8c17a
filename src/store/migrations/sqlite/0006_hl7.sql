-- HL7 alarm intake: the alert each alarm instance became (per sending application), and the
-- message control ids already taken, so that a resent message is acknowledged again and
-- never applied twice.
CREATE TABLE alertcall_hl7_alarms (
    source TEXT NOT NULL,
    alarm_id TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, alarm_id)
);
CREATE TABLE alertcall_hl7_messages (
    source TEXT NOT NULL,
    control_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (source, control_id)
);
