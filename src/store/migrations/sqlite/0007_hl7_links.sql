-- HL7 link supervision: each sending application that sent a watchdog, when it was last
-- heard, and the link-down alert while it is silent. In the database, so that every instance
-- supervises every source, whichever instance the gateway is connected to.
CREATE TABLE alertcall_hl7_links (
    source TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    last_heard_at TEXT NOT NULL,
    alert_id TEXT
);
