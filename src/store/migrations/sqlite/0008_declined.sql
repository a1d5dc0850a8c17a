-- When the nurse declined on a call (pressed 3 or said "busy"): its status stays what the
-- seed records (`completed` once it ends), and this says what the call came to.
ALTER TABLE alertcall_calls ADD COLUMN declined_at TEXT;
