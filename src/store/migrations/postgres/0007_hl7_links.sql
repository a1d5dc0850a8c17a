-- HL7 link supervision: each sending application that sent a watchdog, when it was last
-- heard, and the link-down alert while it is silent. In the database, so that every instance
-- supervises every source, whichever instance the gateway is connected to.
CREATE TABLE alertcall.hl7_links (
    source text PRIMARY KEY,
    state text NOT NULL,
    last_heard_at timestamptz NOT NULL,
    alert_id text
);
