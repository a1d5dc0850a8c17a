//! HL7 alarm intake: the corpus of `ORU^R40` messages through the live MLLP listener, the
//! Python `hl7` package as an independent peer, a flood of malformed messages, and alarms
//! from start to a call and press 1, or to an end that hangs the call up.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::core::WAIT;
use crate::db::TestDb;
use crate::helpers::{TestApp, run_tool, tools_present, wait_until};

/// A corpus message, its lines joined with `\r` as HL7 separates segments.
fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .collect::<Vec<_>>()
        .join("\r")
}

/// alertcall with the HL7 listener on and `config` as its alertcall.toml.
async fn spawn_configured(db: &TestDb, config: &tempfile::NamedTempFile) -> TestApp {
    let path = config.path().to_str().unwrap().to_string();
    TestApp::spawn(
        db,
        None,
        &[
            ("ALERTCALL_HL7_LISTEN", "127.0.0.1:0"),
            ("ALERTCALL_CONFIG", path.as_str()),
        ],
    )
    .await
}

async fn spawn(db: &TestDb) -> (TestApp, SocketAddr) {
    let app = TestApp::spawn(db, None, &[("ALERTCALL_HL7_LISTEN", "127.0.0.1:0")]).await;
    let addr = app.hl7.expect("the HL7 listener is on");
    (app, addr)
}

/// An MLLP peer written here from the framing rules (not alertcall's framer), over TCP or
/// TLS.
struct Peer<S = TcpStream>(S);

impl Peer {
    async fn connect(addr: SocketAddr) -> Peer {
        Peer(
            TcpStream::connect(addr)
                .await
                .expect("connect to the HL7 listener"),
        )
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Peer<S> {
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("send");
    }

    /// Sends one framed message and reads its ACK.
    async fn send(&mut self, message: &[u8]) -> Ack {
        let mut framed = vec![0x0b];
        framed.extend_from_slice(message);
        framed.extend_from_slice(&[0x1c, 0x0d]);
        self.send_raw(&framed).await;
        self.ack().await
    }

    async fn ack(&mut self) -> Ack {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, async {
            while !got.ends_with(&[0x1c, 0x0d]) {
                let n = self.0.read(&mut byte).await.expect("read the ACK");
                assert_eq!(n, 1, "the listener closed before its ACK; got {got:?}");
                got.push(byte[0]);
            }
        })
        .await
        .expect("an ACK in time");
        assert_eq!(got[0], 0x0b, "an ACK starts its frame");
        Ack(String::from_utf8(got[1..got.len() - 2].to_vec()).expect("a UTF-8 ACK"))
    }
}

/// An ACK, read field by field.
struct Ack(String);

impl Ack {
    fn field(&self, segment: &str, n: usize) -> String {
        self.0
            .split('\r')
            .find(|s| s.starts_with(segment))
            .and_then(|s| s.split('|').nth(n))
            .unwrap_or_default()
            .to_string()
    }

    fn assert(&self, code: &str, control_id: &str) {
        assert_eq!(self.field("MSH", 8), "ACK^R40^ACK", "{:?}", self.0);
        assert_eq!(self.field("MSA", 1), code, "{:?}", self.0);
        assert_eq!(self.field("MSA", 2), control_id, "{:?}", self.0);
    }
}

/// The alerts the intake wrote: id, severity, status, alert_type, message, room name,
/// patient name, acknowledged_at, metadata.hl7.
async fn alerts(db: &TestDb) -> Vec<(String, Vec<Option<String>>, Value)> {
    db.rows(
        "SELECT CAST(a.id AS TEXT), a.severity, a.status, a.alert_type, a.message, r.room_name, \
           p.name, CAST(a.acknowledged_at AS TEXT), CAST(a.metadata AS TEXT) \
         FROM alerts a LEFT JOIN rooms r ON CAST(r.room_id AS TEXT) = CAST(a.room_id AS TEXT) \
         LEFT JOIN patients p ON p.patient_id = a.patient_id ORDER BY a.alert_type",
    )
    .await
    .into_iter()
    .map(|mut row| {
        let metadata: Value =
            serde_json::from_str(row.pop().unwrap().as_deref().unwrap_or("{}")).unwrap();
        let id = row.remove(0).unwrap();
        (id, row, metadata["hl7"].clone())
    })
    .collect()
}

fn text(v: &[&str]) -> Vec<Option<String>> {
    v.iter()
        .map(|s| (!s.is_empty()).then(|| s.to_string()))
        .collect()
}

pub async fn corpus_gives_its_alerts_and_acks(db: TestDb) {
    let (app, addr) = spawn(&db).await;
    let mut peer = Peer::connect(addr).await;

    // Vendor A: start.
    peer.send(fixture("a_start.hl7").as_bytes())
        .await
        .assert("AA", "A-1001");
    let got = alerts(&db).await;
    assert_eq!(got.len(), 1);
    let (a_id, row, hl7) = &got[0];
    assert_eq!(
        row,
        &text(&[
            "critical",
            "active",
            "MDC_EVT_HI_GT_LIM",
            "Heart rate high 152",
            "Room 12",
            "Grace Okafor",
            ""
        ])
    );
    assert_eq!(hl7["alarm_id"], "ALM-77");
    assert_eq!(
        hl7["sending_application"],
        "ACME_GW^0012A4FFFE000001^EUI-64"
    );
    assert_eq!(hl7["device"], "0012A4FFFE00BEEF^ACME^EUI-64");
    assert_eq!(hl7["priority"], "PH");
    assert_eq!(hl7["kind"], "physiological");
    assert_eq!(hl7["inactivation_state"], "enabled");
    assert_eq!(hl7["location"]["bed"], "Bed 2");
    // The same message again (a peer that missed our ACK): acknowledged, nothing new.
    peer.send(fixture("a_start.hl7").as_bytes())
        .await
        .assert("AA", "A-1001");
    assert_eq!(
        alerts(&db).await.len(),
        1,
        "a resent message is applied once"
    );

    // Vendor B on a second connection: two alarms in one message, other numbering.
    let mut other = Peer::connect(addr).await;
    other
        .send(fixture("b_start_two.hl7").as_bytes())
        .await
        .assert("AA", "NS-00042");
    let got = alerts(&db).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let desat = got
        .iter()
        .find(|a| a.1[2].as_deref() == Some("MDC_EVT_DESAT"))
        .unwrap();
    assert_eq!(
        desat.1,
        text(&[
            "critical",
            "active",
            "MDC_EVT_DESAT",
            "SpO2 low 84",
            "Room 4&5",
            "Zoë Ærø",
            ""
        ])
    );
    assert_eq!(
        desat.2["priority"], "PH",
        "the priority attribute, matched by its text"
    );
    let leads = got
        .iter()
        .find(|a| a.1[2].as_deref() == Some("MDC_EVT_LEAD_OFF"))
        .unwrap();
    assert_eq!(leads.1[0].as_deref(), Some("low"), "PL maps to low");
    assert_eq!(
        leads.1[3].as_deref(),
        Some(r"Leads off | check V1^V2 \ ~ ok")
    );
    assert_eq!(leads.2["kind"], "technical");
    assert_eq!(leads.2["phase"], "start");
    assert_eq!(leads.2["device"], "NS-MON-0042");

    // Vendor A: update (priority down to PM) and end, linked by OBR-29.
    peer.send(fixture("a_update.hl7").as_bytes())
        .await
        .assert("AA", "A-1002");
    let a = alerts(&db)
        .await
        .into_iter()
        .find(|a| &a.0 == a_id)
        .unwrap();
    assert_eq!(
        a.1[..4],
        text(&["high", "active", "MDC_EVT_HI_GT_LIM", "Heart rate high 171"])
    );
    assert_eq!(a.2["phase"], "update");
    peer.send(fixture("a_end.hl7").as_bytes())
        .await
        .assert("AA", "A-1003");
    let a = alerts(&db)
        .await
        .into_iter()
        .find(|a| &a.0 == a_id)
        .unwrap();
    assert_eq!(a.1[1].as_deref(), Some("resolved"));
    assert_eq!(a.1[6], None, "ended at the source, not acknowledged");
    assert_eq!(a.2["ended_at_source"], true);
    assert_eq!(
        alerts(&db).await.len(),
        3,
        "follow-ups make no alert of their own"
    );

    // Missing optional fields: no patient, no room, no phase, no priority (taken as PH).
    peer.send(fixture("minimal.hl7").as_bytes())
        .await
        .assert("AA", "T-1");
    let apnea = alerts(&db)
        .await
        .into_iter()
        .find(|a| a.1[2].as_deref() == Some("MDC_EVT_APNEA"))
        .unwrap();
    assert_eq!(
        apnea.1,
        text(&["critical", "active", "MDC_EVT_APNEA", "apnea", "", "", ""])
    );

    // Refusals: a type we do not take, and a phase nobody defined.
    let adt = fixture("a_start.hl7").replace("ORU^R40^ORU_R40|A-1001", "ADT^A01^ADT_A01|X-1");
    let ack = peer.send(adt.as_bytes()).await;
    ack.assert("AR", "X-1");
    assert_eq!(ack.field("ERR", 2), "MSH^1^9");
    assert!(ack.field("ERR", 3).starts_with("200^"), "{:?}", ack.0);
    let later = fixture("a_start.hl7")
        .replace("A-1001", "X-2")
        .replace("ALM-77", "ALM-99")
        .replace("|start|", "|later|");
    let ack = peer.send(later.as_bytes()).await;
    ack.assert("AE", "X-2");
    assert_eq!(ack.field("ERR", 2), "OBX^3^5");
    assert!(ack.field("ERR", 3).starts_with("103^"), "{:?}", ack.0);
    assert_eq!(alerts(&db).await.len(), 4, "refused messages write nothing");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM {}", db.table("hl7_alarms")))
            .await,
        4
    );
    app.stop().await;
}
both_backends!(hl7::corpus_gives_its_alerts_and_acks);

/// A Python with the `hl7` package (the venv `.ci/run` makes, else the system's), or None
/// when the test may skip without it.
fn python_hl7() -> Option<String> {
    let venv = std::env::var("ALERTCALL_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/alertcall-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = ["python3".to_string(), format!("{venv}/bin/python")]
        .into_iter()
        .rev()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import hl7.client, hl7.mllp"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let missing = match &python {
        Some(_) => vec![],
        None => vec!["the Python hl7 package (pip install hl7)".to_string()],
    };
    // Says why the test skips, or fails it where the peer is required.
    let present = tools_present("hl7 peer", &missing, "ALERTCALL_REQUIRE_HL7_PEER");
    python.filter(|_| present)
}

/// python-hl7's MLLP client sends the corpus; its parser reads our ACKs.
pub async fn python_hl7_is_answered(db: TestDb) {
    let Some(python) = python_hl7() else {
        return;
    };
    let (app, addr) = spawn(&db).await;
    let script = r#"
import json, sys, hl7
from hl7.client import MLLPClient
out = []
with MLLPClient(sys.argv[1], int(sys.argv[2])) as client:
    for path in sys.argv[3:]:
        text = open(path, encoding="utf-8").read().strip().replace("\n", "\r")
        reply = client.send_message(text)
        ack = hl7.parse(reply.decode("utf-8") if isinstance(reply, bytes) else reply)
        out.append({"type": str(ack.segment("MSH")[9]), "code": str(ack.segment("MSA")[1]),
                    "control_id": str(ack.segment("MSA")[2])})
print(json.dumps(out))
"#;
    let dir = format!("{}/tests/fixtures/hl7", env!("CARGO_MANIFEST_DIR"));
    let mut run = Command::new(python);
    run.args(["-c", script, "127.0.0.1", &addr.port().to_string()])
        .arg(format!("{dir}/b_start_two.hl7"))
        .arg(format!("{dir}/a_start.hl7"))
        .arg(format!("{dir}/a_end.hl7"));
    let out: Value = serde_json::from_str(run_tool(run, "python hl7 peer").await.trim()).unwrap();
    let seen: Vec<(String, String, String)> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_string(),
                a["code"].as_str().unwrap().to_string(),
                a["control_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ack = |id: &str| ("ACK^R40^ACK".to_string(), "AA".to_string(), id.to_string());
    assert_eq!(seen, vec![ack("NS-00042"), ack("A-1001"), ack("A-1003")]);
    let rows = alerts(&db).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter()
            .filter(|a| a.1[1].as_deref() == Some("resolved"))
            .count(),
        1
    );
    app.stop().await;
}
both_backends!(hl7::python_hl7_is_answered);

/// Malformed messages of every kind: each is answered (or dropped with its connection),
/// nothing is written, and the listener still takes a good message afterwards.
pub async fn malformed_messages_write_nothing(db: TestDb) {
    let _turn = crate::helpers::heavy().await;
    let count: usize = if std::env::var("ALERTCALL_TORTURE").as_deref() == Ok("full") {
        50_000
    } else {
        10_000
    };
    let app = TestApp::spawn(
        &db,
        None,
        &[
            ("ALERTCALL_HL7_LISTEN", "127.0.0.1:0"),
            ("ALERTCALL_HL7_MAX_MESSAGE", "4096"),
        ],
    )
    .await;
    let addr = app.hl7.unwrap();
    let good = fixture("a_start.hl7");
    let mut rng = fastrand::Rng::with_seed(14);
    let mut peer = Peer::connect(addr).await;
    let mut answered = 0;
    for i in 0..count {
        let mut bad: Vec<u8> = match rng.usize(0..8) {
            // Random bytes.
            0 => (0..rng.usize(0..300))
                .map(|_| rng.u8(..))
                .filter(|b| *b != 0x1c)
                .collect(),
            // A good message with its type changed.
            1 => good
                .replacen("ORU^R40", &format!("ORU^R{}", rng.u8(41..99)), 1)
                .into_bytes(),
            // Cut short before its first OBR.
            2 => good.as_bytes()[..rng.usize(0..good.find("OBR").unwrap())].to_vec(),
            // A phase nobody defined.
            3 => good
                .replace("|start|", &format!("|{}|", rng.alphabetic()))
                .into_bytes(),
            // No alarm instance id, or no control id.
            4 if rng.bool() => good
                .replace("|ALM-77^ACME_GW|ALM-77^ACME_GW|", "|||")
                .into_bytes(),
            4 => good.replace("|A-1001|", "||").into_bytes(),
            // Not UTF-8.
            5 => {
                let mut b = good.clone().into_bytes();
                let at = rng.usize(20..b.len());
                b[at] = 0xff;
                b
            }
            // Too large.
            6 => good
                .replace("Heart rate high 152", &"x".repeat(5000))
                .into_bytes(),
            // The alarm without its event OBX, or a segment that cannot be read.
            _ => {
                let cut = good.find("OBX").unwrap();
                let mut b = good[..cut].to_string();
                if rng.bool() {
                    b.push_str("\r\u{1}\u{2}|||");
                }
                b.into_bytes()
            }
        };
        // Noise between frames now and then.
        if i % 97 == 0 {
            peer.send_raw(b"\r\n stray bytes \x1c\r").await;
        }
        // Some with a fresh control id so that none is taken for a resend.
        if let Some(at) = bad.windows(6).position(|w| w == b"A-1001") {
            bad.splice(at..at + 6, format!("Z{i:05}").bytes());
        }
        let ack = peer.send(&bad).await;
        assert!(
            matches!(ack.field("MSA", 1).as_str(), "AE" | "AR"),
            "message {i} was not refused: {:?} for {:?}",
            ack.0,
            String::from_utf8_lossy(&bad)
        );
        answered += 1;
    }
    assert_eq!(answered, count);
    assert_eq!(
        db.count("SELECT count(*) FROM alerts").await,
        0,
        "a malformed message wrote an alert"
    );
    // A truncated frame and a close: the listener goes on.
    peer.send_raw(b"\x0bMSH|^~\\&|cut").await;
    drop(peer);
    let mut peer = Peer::connect(addr).await;
    peer.send(good.as_bytes()).await.assert("AA", "A-1001");
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 1);
    app.stop().await;
}
both_backends!(hl7::malformed_messages_write_nothing);

async fn sim_calls(app: &TestApp) -> Vec<Value> {
    app.get("/api/sim/calls").await.json().await.unwrap()
}

async fn sim(app: &TestApp, path: &str, body: Option<Value>) -> Value {
    let mut req = app.http.post(app.url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "POST {path}");
    r.json().await.unwrap()
}

/// ORU start → a call → press 1 acknowledges; a second alarm's end before anyone answered
/// hangs its call up and resolves it as ended at the source.
pub async fn alarms_are_phoned_and_ended(db: TestDb) {
    let (app, addr) = spawn(&db).await;
    let mut peer = Peer::connect(addr).await;
    peer.send(fixture("a_start.hl7").as_bytes())
        .await
        .assert("AA", "A-1001");
    wait_until("the simulated phone rings", WAIT, || async {
        sim_calls(&app).await.len() == 1
    })
    .await;
    let call = sim_calls(&app).await.remove(0);
    let id = call["id"].as_str().unwrap().to_string();
    let answered = sim(&app, &format!("/api/sim/calls/{id}/answer"), None).await;
    assert!(
        answered["heard"][0]
            .as_str()
            .unwrap()
            .contains("Heart rate high 152"),
        "{answered}"
    );
    sim(
        &app,
        &format!("/api/sim/calls/{id}/press"),
        Some(serde_json::json!({"keys": "1"})),
    )
    .await;
    let a = alerts(&db).await.remove(0);
    assert_eq!(a.1[1].as_deref(), Some("acknowledged"));
    assert!(a.1[6].is_some(), "acknowledged_at is set");

    // A second alarm: ringing, then its end arrives before anyone answers.
    let second = fixture("a_start.hl7")
        .replace("A-1001", "A-2001")
        .replace("ALM-77", "ALM-80");
    peer.send(second.as_bytes()).await.assert("AA", "A-2001");
    wait_until("the second call rings", WAIT, || async {
        sim_calls(&app)
            .await
            .iter()
            .any(|c| c["state"] == "ringing")
    })
    .await;
    let end = fixture("a_end.hl7")
        .replace("A-1003", "A-2003")
        .replace("ALM-77", "ALM-80");
    peer.send(end.as_bytes()).await.assert("AA", "A-2003");
    wait_until("the ringing call is hung up", WAIT, || async {
        sim_calls(&app)
            .await
            .iter()
            .all(|c| c["state"] != "ringing")
    })
    .await;
    let ended = alerts(&db)
        .await
        .into_iter()
        .find(|a| a.2["alarm_id"] == "ALM-80")
        .unwrap();
    assert_eq!(ended.1[1].as_deref(), Some("resolved"));
    assert_eq!(ended.1[6], None, "not acknowledged: nobody acted");
    assert_eq!(ended.2["ended_at_source"], true);
    app.assert_audit(&ended.0, &["hl7.start", "hl7.end", "alert.resolved"])
        .await;
    wait_until(
        "no call of the ended alarm is live",
        Duration::from_secs(10),
        || async {
            app.engine
                .store
                .list_calls(Some(&ended.0), 10)
                .await
                .unwrap()
                .iter()
                .all(|c| c.status.is_terminal())
        },
    )
    .await;
    app.stop().await;
}
both_backends!(hl7::alarms_are_phoned_and_ended);

/// `alertcall hl7 send <file>` run against `app`'s listener (through ALERTCALL_HL7_LISTEN
/// unless `args` name `--to`): its output and exit status.
async fn hl7_send(listen: SocketAddr, args: &[&str], file: &str) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let file = file.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alarms.hl7"), file).unwrap();
        let mut all = vec!["hl7", "send", "alarms.hl7"];
        all.extend(args.iter().map(String::as_str));
        let listen = listen.to_string();
        crate::cli::run(
            &all,
            &[("ALERTCALL_HL7_LISTEN", listen.as_str())],
            dir.path(),
        )
    })
    .await
    .unwrap()
}

fn printed(out: &std::process::Output) -> String {
    format!("{}{}", crate::cli::stdout(out), crate::cli::stderr(out))
}

/// The MLLP client sends files of one or several messages (any line ends) and says what each
/// ACK means; exit status 0 only when every message got AA.
pub async fn hl7_send_reports_each_ack(db: TestDb) {
    let (app, addr) = spawn(&db).await;
    // Two messages in one file, CRLF line ends: both AA, both written.
    let two = format!(
        "{}\n\n{}\n",
        fixture("a_start.hl7"),
        fixture("b_start_two.hl7")
    )
    .replace('\r', "\r\n");
    let out = hl7_send(addr, &[], &two).await;
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("sending 2 messages from alarms.hl7 to {addr}")),
        "{text}"
    );
    assert!(
        text.contains("✓ message 1 (A-1001): AA: accepted"),
        "{text}"
    );
    assert!(
        text.contains("✓ message 2 (NS-00042): AA: accepted"),
        "{text}"
    );
    assert_eq!(alerts(&db).await.len(), 3);

    // AE with its ERR in words, then a good message after it: still exit status 1.
    let later = fixture("a_start.hl7")
        .replace("A-1001", "X-2")
        .replace("ALM-77", "ALM-99")
        .replace("|start|", "|later|");
    let good = fixture("minimal.hl7");
    let out = hl7_send(
        addr,
        &["--to", &addr.to_string()],
        &format!("{later}\r{good}"),
    )
    .await;
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ message 1 (X-2): AE: error: the receiver could not take this message"),
        "{text}"
    );
    assert!(
        text.contains(
            "    at OBX-5: 103 Table value not found: event phase \"later\" is not one of start"
        ),
        "{text}"
    );
    assert!(text.contains("✓ message 2 (T-1): AA"), "{text}");

    // AR: a type the listener does not take.
    let adt = fixture("a_start.hl7").replace("ORU^R40^ORU_R40|A-1001", "ADT^A01^ADT_A01|X-1");
    let out = hl7_send(addr, &[], &adt).await;
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("✗ message 1 (X-1): AR: rejected"), "{text}");
    assert!(
        text.contains("at MSH-9: 200 Unsupported message type"),
        "{text}"
    );
    assert_eq!(alerts(&db).await.len(), 4, "only the good messages wrote");
    app.assert_metrics(&[
        ("alertcall_hl7_messages_total{result=\"AA\"}", 3.0),
        ("alertcall_hl7_messages_total{result=\"AE\"}", 1.0),
        ("alertcall_hl7_messages_total{result=\"AR\"}", 1.0),
    ])
    .await;
    app.stop().await;

    // Nothing listening: one clear sentence, status 1.
    let out = hl7_send(addr, &["--timeout", "2s"], &good).await;
    let text = printed(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("nothing answers at {addr}"))
            && text.contains("is `alertcall serve` running there with ALERTCALL_HL7_LISTEN set?"),
        "{text}"
    );
    // A file that holds no message.
    let out = hl7_send(addr, &[], "PID|||1\n").await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        printed(&out).contains("the first segment is not MSH"),
        "{}",
        printed(&out)
    );
}
both_backends!(hl7::hl7_send_reports_each_ack);

/// The board and the alert page carry an HL7 alarm's source (device and sending
/// application); an alert the hospital app wrote has none.
pub async fn the_board_names_an_alarms_source(db: TestDb) {
    use crate::dashboard::ADMIN_TOKEN;
    let app = TestApp::spawn(
        &db,
        None,
        &[
            ("ALERTCALL_HL7_LISTEN", "127.0.0.1:0"),
            ("ALERTCALL_API_TOKEN", ADMIN_TOKEN),
        ],
    )
    .await;
    let mut peer = Peer::connect(app.hl7.unwrap()).await;
    peer.send(fixture("a_start.hl7").as_bytes())
        .await
        .assert("AA", "A-1001");
    let hl7_id = alerts(&db).await.remove(0).0;
    let plain = db.insert_alert("critical", "p1", "r1", "Fall").await;
    let board = app.get_json("/api/v1/alerts", ADMIN_TOKEN).await;
    let source_of = |id: &str| {
        board
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("{id} on the board: {board}"))["source"]
            .clone()
    };
    let expected = serde_json::json!({
        "application": "ACME_GW^0012A4FFFE000001^EUI-64",
        "device": "0012A4FFFE00BEEF^ACME^EUI-64",
    });
    assert_eq!(source_of(&hl7_id), expected);
    assert_eq!(source_of(&plain), Value::Null, "not an HL7 alarm");
    let page = app
        .get_json(&format!("/api/v1/alerts/{hl7_id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(page["alert"]["source"], expected);
    // An alarm without OBX-18: the application alone.
    peer.send(fixture("minimal.hl7").as_bytes())
        .await
        .assert("AA", "T-1");
    let minimal = alerts(&db)
        .await
        .into_iter()
        .find(|a| a.1[2].as_deref() == Some("MDC_EVT_APNEA"))
        .unwrap()
        .0;
    let page = app
        .get_json(&format!("/api/v1/alerts/{minimal}"), ADMIN_TOKEN)
        .await;
    assert_eq!(
        page["alert"]["source"],
        serde_json::json!({"application": "TINY_GW", "device": null})
    );
    app.stop().await;
}
both_backends!(hl7::the_board_names_an_alarms_source);

/// The vendor A watchdog with control id `control_id`, from `gateway` (MSH-3's first
/// component), in alarm state `state`.
fn watchdog(gateway: &str, control_id: &str, state: &str) -> String {
    fixture("a_watchdog.hl7")
        .replace("ACME_GW^", &format!("{gateway}^"))
        .replace("A-W01", control_id)
        .replace("|active|", &format!("|{state}|"))
}

/// The link-down alerts, as `alerts` gives them.
async fn link_down(db: &TestDb) -> Vec<(String, Vec<Option<String>>, Value)> {
    alerts(db)
        .await
        .into_iter()
        .filter(|a| a.1[2].as_deref() == Some("hl7_link_down"))
        .collect()
}

async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    crate::core::metric(&text, series)
}

/// Link supervision: a watchdog is acknowledged and tracked, never an alert; a supervised
/// gateway's silence past `[hl7] watchdog_timeout` is a critical `hl7_link_down` alert that
/// pages the fallback contact (no policy takes that type here) and shows in /metrics; the
/// next message resolves it; a gateway that signed off with a final `inactive` watchdog may
/// fall silent.
pub async fn a_silent_gateway_is_an_alarm(db: TestDb) {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        r#"
[hospital]
fallback = ["person:desk"]

[hl7]
watchdog_timeout = "1s"

[[staff]]
id = "ana"
name = "Ana"
phone = "+13854019951"

[[staff]]
id = "desk"
name = "Charge desk"
phone = "+13854019959"

[[policies]]
name = "monitors"
alert_types = ["MDC_EVT_HI_GT_LIM"]
[[policies.steps]]
notify = ["person:ana"]
"#,
    )
    .unwrap();
    let app = spawn_configured(&db, &config).await;
    let addr = app.hl7.unwrap();
    let mut peer = Peer::connect(addr).await;
    // A watchdog: acknowledged, no alert, the link up.
    peer.send(watchdog("ACME_GW", "W-1", "active").as_bytes())
        .await
        .assert("AA", "W-1");
    assert_eq!(alerts(&db).await.len(), 0, "a watchdog makes no alert");
    wait_until("the link counts as up", WAIT, || async {
        metric(&app, "alertcall_hl7_links{state=\"up\"}").await == Some(1.0)
    })
    .await;

    // Silence past the timeout: a critical hl7_link_down alert, paged to the fallback.
    wait_until("the silent gateway raises hl7_link_down", WAIT, || async {
        link_down(&db).await.len() == 1
    })
    .await;
    let (down_id, row, hl7) = link_down(&db).await.remove(0);
    assert_eq!(row[0].as_deref(), Some("critical"));
    assert_eq!(row[1].as_deref(), Some("active"));
    assert!(
        row[3]
            .as_deref()
            .unwrap()
            .starts_with("The alarm gateway ACME_GW has sent nothing for 1 s."),
        "{row:?}"
    );
    assert_eq!(
        hl7["sending_application"],
        "ACME_GW^0012A4FFFE000001^EUI-64"
    );
    wait_until("the fallback contact is called", WAIT, || async {
        sim_calls(&app)
            .await
            .iter()
            .any(|c| c["to"].as_str().is_some_and(|to| to.ends_with("59")))
    })
    .await;
    // The gauge is set by the round that raised the alert, which under load may finish after
    // the fallback's call went out.
    wait_until("the gauge counts the link down", WAIT, || async {
        metric(&app, "alertcall_hl7_links{state=\"down\"}").await == Some(1.0)
            && metric(&app, "alertcall_hl7_links{state=\"up\"}").await == Some(0.0)
    })
    .await;
    app.assert_audit(&down_id, &["hl7.link_down"]).await;

    // Heard again: the link-down alert is resolved and its calls end.
    peer.send(watchdog("ACME_GW", "W-2", "active").as_bytes())
        .await
        .assert("AA", "W-2");
    let (_, row, _) = link_down(&db).await.remove(0);
    assert_eq!(
        row[1].as_deref(),
        Some("resolved"),
        "resolved when heard again"
    );
    wait_until("the fallback's call is hung up", WAIT, || async {
        app.engine
            .store
            .list_calls(Some(&down_id), 10)
            .await
            .unwrap()
            .iter()
            .all(|c| c.status.is_terminal())
    })
    .await;

    // ACME signs off with a final watchdog; a second gateway keeps sending nothing after
    // its first. Only the second is an alarm.
    peer.send(watchdog("ACME_GW", "W-3", "inactive").as_bytes())
        .await
        .assert("AA", "W-3");
    peer.send(watchdog("OTHER_GW", "O-1", "active").as_bytes())
        .await
        .assert("AA", "O-1");
    drop(peer);
    wait_until("the second gateway's silence is an alarm", WAIT, || async {
        link_down(&db).await.len() == 2
    })
    .await;
    let others: Vec<Value> = link_down(&db).await.into_iter().map(|a| a.2).collect();
    assert!(
        others
            .iter()
            .any(|h| h["sending_application"] == "OTHER_GW^0012A4FFFE000001^EUI-64"),
        "{others:?}"
    );
    wait_until("the gauge counts the closed link", WAIT, || async {
        metric(&app, "alertcall_hl7_links{state=\"closed\"}").await == Some(1.0)
    })
    .await;
    wait_until("the gauge counts the second link down", WAIT, || async {
        metric(&app, "alertcall_hl7_links{state=\"down\"}").await == Some(1.0)
    })
    .await;
    app.assert_metrics(&[("alertcall_hl7_messages_total{result=\"AA\"}", 4.0)])
        .await;
    app.stop().await;
}
both_backends!(hl7::a_silent_gateway_is_an_alarm);

/// The Alarm Reporter's side of status reports: python-hl7's MLLP server, which prints each
/// message it receives as JSON and answers it with python-hl7's own ACK.
struct Reporter {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Reporter {
    async fn start(python: &str, port: u16) -> Reporter {
        use std::io::BufRead;
        let script = r#"
import asyncio, json, sys, hl7
from hl7.mllp import start_hl7_server

def field(msg, segment, n):
    try:
        return str(msg.segment(segment)[n])
    except KeyError:
        return None

async def peer(reader, writer):
    try:
        while not writer.is_closing():
            msg = await reader.readmessage()
            print(json.dumps({"type": field(msg, "MSH", 9), "obr3": field(msg, "OBR", 3),
                              "status": field(msg, "OBX", 5), "participant": field(msg, "PRT", 5),
                              "patient": field(msg, "PID", 3)}), flush=True)
            writer.writemessage(msg.create_ack())
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass

async def main():
    server = await start_hl7_server(peer, host="127.0.0.1", port=int(sys.argv[1]))
    print(json.dumps({"listening": True}), flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"#;
        let mut child = Command::new(python)
            .args(["-c", script, &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start python-hl7's MLLP server");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut reporter = Reporter { child, lines };
        assert_eq!(reporter.next().await["listening"], true);
        reporter
    }

    /// The next line the peer printed (a retry may be up to 30 s away).
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(2 * WAIT, self.lines.recv())
            .await
            .expect("the Alarm Reporter hears from alertcall in time")
            .expect("the peer is running");
        serde_json::from_str(&line).unwrap()
    }
}

/// Status back to the source (PCD-05 ORA^R41): an alarm declined by the first nurse, escalated
/// to the second, who takes it. The five reports are queued while the Alarm Reporter is away,
/// survive a restart, and reach it in order once it listens; python-hl7 parses each one and
/// its ACK marks it sent.
pub async fn status_goes_back_to_the_source(db: TestDb) {
    let Some(python) = python_hl7() else {
        return;
    };
    // A port nobody listens on yet: the Alarm Reporter comes up later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = two_steps(
        &format!("[hl7]\nreport_status = \"127.0.0.1:{port}\"\n"),
        "10m",
    );
    let app = spawn_configured(&db, &config).await;
    let mut peer = Peer::connect(app.hl7.unwrap()).await;
    peer.send(fixture("a_start.hl7").as_bytes())
        .await
        .assert("AA", "A-1001");
    let reports = db.table("hl7_reports");
    let queued = |n: i64| {
        let (db, reports) = (&db, &reports);
        async move {
            wait_until(&format!("{n} report(s) queued"), WAIT, || async {
                db.count(&format!("SELECT count(*) FROM {reports}")).await == n
            })
            .await;
        }
    };
    let call_to = |ends: &'static str| {
        let app = &app;
        async move {
            wait_until("the call rings", WAIT, || async { rings(app, ends).await }).await;
            let calls = sim_calls(app).await;
            let call = calls
                .iter()
                .find(|c| c["to"].as_str().is_some_and(|to| to.ends_with(ends)))
                .unwrap();
            call["id"].as_str().unwrap().to_string()
        }
    };
    let post = |path: String, keys: Option<&'static str>| {
        let app = &app;
        async move {
            sim(app, &path, keys.map(|k| serde_json::json!({ "keys": k }))).await;
        }
    };
    // Each step waits for its report, so that the order is the order things happened (the
    // simulator's "answered" event is queued, and a quick key press could overtake it).
    let ana = call_to("51").await;
    post(format!("/api/sim/calls/{ana}/answer"), None).await;
    queued(1).await;
    post(format!("/api/sim/calls/{ana}/press"), Some("3")).await;
    queued(2).await;
    let ben = call_to("52").await;
    queued(3).await;
    post(format!("/api/sim/calls/{ben}/answer"), None).await;
    queued(4).await;
    post(format!("/api/sim/calls/{ben}/press"), Some("1")).await;
    queued(5).await;
    wait_until(
        "the first report was tried while the source is away",
        WAIT,
        || async {
            db.count(&format!(
                "SELECT count(*) FROM {reports} WHERE attempts > 0 AND sent_at IS NULL \
             AND last_error IS NOT NULL"
            ))
            .await
                == 1
        },
    )
    .await;
    assert_eq!(
        metric(&app, "alertcall_hl7_status_reports_total{result=\"sent\"}").await,
        None
    );
    assert!(
        metric(
            &app,
            "alertcall_hl7_status_reports_total{result=\"failed\"}"
        )
        .await
        .is_some_and(|n| n >= 1.0)
    );
    drop(peer);
    app.stop().await;

    // The source comes up, alertcall restarts: every report arrives, in order.
    let mut reporter = Reporter::start(&python, port).await;
    let app = spawn_configured(&db, &config).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(reporter.next().await);
    }
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|m| {
            (
                m["status"].as_str().unwrap(),
                m["participant"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("delivered", "ana^Ana Diaz"),
            ("declined", "ana^Ana Diaz"),
            ("escalated", ""),
            ("delivered", "ben^Ben Okoro"),
            ("accepted", "ben^Ben Okoro"),
        ]
    );
    for m in &got {
        assert_eq!(m["type"], "ORA^R41^ORA_R41");
        assert_eq!(m["obr3"], "ALM-77^ACME_GW");
        assert_eq!(m["patient"], "MRN4411");
    }
    wait_until("every report is marked sent", WAIT, || async {
        db.count(&format!(
            "SELECT count(*) FROM {reports} WHERE sent_at IS NOT NULL"
        ))
        .await
            == 5
            && metric(&app, "alertcall_hl7_status_reports_unsent").await == Some(0.0)
    })
    .await;
    app.assert_metrics(&[("alertcall_hl7_status_reports_total{result=\"sent\"}", 5.0)])
        .await;
    app.stop().await;
}
both_backends!(hl7::status_goes_back_to_the_source);

/// alertcall.toml with `extra` and a two-step policy (Ana, then Ben after `first_wait`) for
/// the corpus's heart-rate alarm.
fn two_steps(extra: &str, first_wait: &str) -> tempfile::NamedTempFile {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            r#"{extra}
[[staff]]
id = "ana"
name = "Ana Diaz"
phone = "+13854019951"

[[staff]]
id = "ben"
name = "Ben Okoro"
phone = "+13854019952"

[[policies]]
name = "monitors"
alert_types = ["MDC_EVT_HI_GT_LIM"]
[[policies.steps]]
notify = ["person:ana"]
wait = "{first_wait}"
[[policies.steps]]
notify = ["person:ben"]
wait = "10m"
"#
        ),
    )
    .unwrap();
    config
}

/// The corpus's alarm ALM-77 at `priority`, in `phase`, as message `control_id`.
fn alm77(phase: &str, priority: &str, control_id: &str) -> String {
    let base = if phase == "end" {
        fixture("a_end.hl7").replace("A-1003", control_id)
    } else {
        fixture("a_update.hl7")
            .replace("A-1002", control_id)
            .replace("|update|", &format!("|{phase}|"))
    };
    base.replace("PM~SP", &format!("{priority}~SP"))
        .replace("PH~SP", &format!("{priority}~SP"))
}

async fn rings(app: &TestApp, ends: &str) -> bool {
    sim_calls(app)
        .await
        .iter()
        .any(|c| c["to"].as_str().is_some_and(|to| to.ends_with(ends)))
}

/// A priority change in an update re-evaluates the policy: a PM alarm is not phoned; raised
/// to PH it is, at once; lowered to PM again its escalation goes no further (the second step
/// is never called while it stays PM), and raised again it goes on.
pub async fn a_priority_change_re_evaluates_the_policy(db: TestDb) {
    let config = two_steps("", "3s");
    let app = spawn_configured(&db, &config).await;
    let mut peer = Peer::connect(app.hl7.unwrap()).await;
    peer.send(alm77("start", "PM", "P-1").as_bytes())
        .await
        .assert("AA", "P-1");
    let (id, row, _) = alerts(&db).await.remove(0);
    assert_eq!(row[0].as_deref(), Some("high"));
    assert_eq!(app.page_state(&id).await, None, "a PM alarm is not paged");

    peer.send(alm77("update", "PH", "P-2").as_bytes())
        .await
        .assert("AA", "P-2");
    wait_until("raised to PH, the first step is called", WAIT, || async {
        rings(&app, "51").await
    })
    .await;

    peer.send(alm77("update", "PM", "P-3").as_bytes())
        .await
        .assert("AA", "P-3");
    // When the first step's wait runs out, the escalation holds instead of calling step 2.
    wait_until("the escalation holds", WAIT, || async {
        app.engine
            .store
            .list_events(&id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "page.held")
    })
    .await;
    assert!(!rings(&app, "52").await, "lowered to PM: no further step");
    assert_eq!(alerts(&db).await[0].1[0].as_deref(), Some("high"));

    peer.send(alm77("update", "PH", "P-4").as_bytes())
        .await
        .assert("AA", "P-4");
    wait_until("raised again, the escalation goes on", WAIT, || async {
        rings(&app, "52").await
    })
    .await;
    app.stop().await;
}
both_backends!(hl7::a_priority_change_re_evaluates_the_policy);

/// A storm: a monitor flapping one alarm start/end 200 times is one alert, phoned at most
/// once, and every message is acknowledged.
pub async fn a_flapping_alarm_is_one_alert(db: TestDb) {
    let (app, addr) = spawn(&db).await;
    let mut peer = Peer::connect(addr).await;
    for i in 0..200 {
        let phase = if i % 2 == 0 { "start" } else { "end" };
        let control_id = format!("F-{i}");
        peer.send(alm77(phase, "PH", &control_id).as_bytes())
            .await
            .assert("AA", &control_id);
    }
    let rows = alerts(&db).await;
    assert_eq!(rows.len(), 1, "one alarm instance, one alert");
    assert_eq!(rows[0].1[1].as_deref(), Some("resolved"));
    let calls = db
        .count(&format!("SELECT count(*) FROM {}", db.table("calls")))
        .await;
    assert!(calls <= 1, "phoned at most once, not {calls} times");
    app.stop().await;
}
both_backends!(hl7::a_flapping_alarm_is_one_alert);

fn tls_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A TLS client that trusts the test CA (or, with `trusting` false, only the system's roots).
fn tls_client(trusting: bool) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::aws_lc_rs};
    let mut roots = RootCertStore::empty();
    if trusting {
        roots
            .add(CertificateDer::from_pem_file(tls_fixture("ca.pem")).unwrap())
            .unwrap();
    }
    let config =
        ClientConfig::builder_with_provider(std::sync::Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// MLLP over TLS: a client that trusts the CA sends an alarm and reads its ACK through TLS;
/// one that does not trust it, and one that speaks plain MLLP to the TLS port, get nothing
/// and write nothing.
pub async fn the_listener_speaks_tls(db: TestDb) {
    let (cert, key) = (tls_fixture("server.pem"), tls_fixture("server.key"));
    let app = TestApp::spawn(
        &db,
        None,
        &[
            ("ALERTCALL_HL7_LISTEN", "127.0.0.1:0"),
            ("ALERTCALL_HL7_TLS_CERT", cert.as_str()),
            ("ALERTCALL_HL7_TLS_KEY", key.as_str()),
        ],
    )
    .await;
    let addr = app.hl7.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();

    let refused = tls_client(false)
        .connect(name.clone(), TcpStream::connect(addr).await.unwrap())
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");

    let mut plain = Peer::connect(addr).await;
    let mut framed = vec![0x0b];
    framed.extend_from_slice(fixture("a_start.hl7").as_bytes());
    framed.extend_from_slice(&[0x1c, 0x0d]);
    plain.send_raw(&framed).await;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.0.read_to_end(&mut reply))
        .await
        .expect("the listener closes a plain connection");
    assert!(
        !reply.windows(3).any(|w| w == b"MSA"),
        "no ACK in plain text"
    );
    assert_eq!(alerts(&db).await.len(), 0);

    let stream = tls_client(true)
        .connect(name, TcpStream::connect(addr).await.unwrap())
        .await
        .expect("TLS with the test CA");
    let mut peer = Peer(stream);
    peer.send(fixture("a_start.hl7").as_bytes())
        .await
        .assert("AA", "A-1001");
    assert_eq!(alerts(&db).await.len(), 1);
    app.stop().await;
}
both_backends!(hl7::the_listener_speaks_tls);
