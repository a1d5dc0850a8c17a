-- The state of a call that decisions read, written in the transaction of the event that sets it
-- (the audit trail is a record for people, never read to decide): what machine detection said
-- (`human` or `machine`), a spoken acknowledgement held until it does (when, and the provider's
-- timestamp of the input held), and when the call joined the alert's responders' conference.
ALTER TABLE alertcall.calls ADD COLUMN answered_by text;
ALTER TABLE alertcall.calls ADD COLUMN speech_ack_held_at timestamptz;
ALTER TABLE alertcall.calls ADD COLUMN speech_ack_held_input text;
ALTER TABLE alertcall.calls ADD COLUMN conference_joined_at timestamptz;

-- Calls still ringing or in progress take their state from the trail, once (a call ended
-- before this runs decides nothing more).
UPDATE alertcall.calls c SET
    answered_by = (SELECT CASE WHEN bool_or(e.kind = 'call.machine') THEN 'machine'
                                WHEN bool_or(e.kind = 'call.human') THEN 'human' END
                   FROM alertcall.call_events e
                   WHERE e.alert_id = c.alert_id AND e.call_id = c.id),
    speech_ack_held_at = (SELECT min(e.created_at) FROM alertcall.call_events e
                          WHERE e.alert_id = c.alert_id AND e.call_id = c.id
                            AND e.kind = 'menu.choice'
                            AND e.detail ? 'held_for_machine_detection'),
    speech_ack_held_input = (SELECT min(e.detail ->> 'held_for_machine_detection')
                             FROM alertcall.call_events e
                             WHERE e.alert_id = c.alert_id AND e.call_id = c.id
                               AND e.kind = 'menu.choice'),
    conference_joined_at = (SELECT min(e.created_at) FROM alertcall.call_events e
                            WHERE e.alert_id = c.alert_id AND e.call_id = c.id
                              AND e.kind = 'conference.joined')
WHERE c.status IN ('pending', 'initiated', 'ringing', 'in_progress');
