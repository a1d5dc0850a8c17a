-- The state of a call that decisions read, written in the transaction of the event that sets it
-- (the audit trail is a record for people, never read to decide): what machine detection said
-- (`human` or `machine`), a spoken acknowledgement held until it does (when, and the provider's
-- timestamp of the input held), and when the call joined the alert's responders' conference.
ALTER TABLE alertcall_calls ADD COLUMN answered_by TEXT;
ALTER TABLE alertcall_calls ADD COLUMN speech_ack_held_at TEXT;
ALTER TABLE alertcall_calls ADD COLUMN speech_ack_held_input TEXT;
ALTER TABLE alertcall_calls ADD COLUMN conference_joined_at TEXT;

-- Calls still ringing or in progress take their state from the trail, once (a call ended
-- before this runs decides nothing more).
UPDATE alertcall_calls SET
    answered_by = (SELECT CASE WHEN max(e.kind = 'call.machine') THEN 'machine'
                                WHEN max(e.kind = 'call.human') THEN 'human' END
                   FROM alertcall_call_events e
                   WHERE e.alert_id = alertcall_calls.alert_id AND e.call_id = alertcall_calls.id),
    speech_ack_held_at = (SELECT min(e.created_at) FROM alertcall_call_events e
                          WHERE e.alert_id = alertcall_calls.alert_id
                            AND e.call_id = alertcall_calls.id AND e.kind = 'menu.choice'
                            AND json_type(e.detail, '$.held_for_machine_detection') IS NOT NULL),
    speech_ack_held_input = (SELECT min(json_extract(e.detail, '$.held_for_machine_detection'))
                             FROM alertcall_call_events e
                             WHERE e.alert_id = alertcall_calls.alert_id
                               AND e.call_id = alertcall_calls.id AND e.kind = 'menu.choice'),
    conference_joined_at = (SELECT min(e.created_at) FROM alertcall_call_events e
                            WHERE e.alert_id = alertcall_calls.alert_id
                              AND e.call_id = alertcall_calls.id AND e.kind = 'conference.joined')
WHERE status IN ('pending', 'initiated', 'ringing', 'in_progress');
