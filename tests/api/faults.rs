//! Faults in what the hospital writes and in the disk under us: an alert whose time cannot be
//! read is still called and listed; a full disk heals without a restart.

use std::io::Write;
use std::path::PathBuf;

use crate::both_backends;
use crate::core::{WAIT, wait_for_calls};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::{FakeVonage, token};
use crate::helpers::{TestApp, wait_until};

/// The API token of these tests' servers (ALERTCALL_API_TOKEN).
pub const TOKEN: &str = "faults-t0ken";
pub const API_TOKEN: (&str, &str) = ("ALERTCALL_API_TOKEN", TOKEN);

/// The hospital's own `alerts` table, created before alertcall starts, with a time column that
/// takes anything (SQLite) or NULL (Postgres).
fn hospital_table(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TABLE alerts (id TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(16)))), \
             patient_id TEXT, room_id TEXT, severity TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', \
             alert_type TEXT, title TEXT, message TEXT, triggered_at, acknowledged_at, \
             acknowledged_by TEXT, metadata TEXT DEFAULT '{}')"
        }
        Backend::Postgres => {
            "CREATE TABLE alerts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), patient_id text, \
             room_id text, severity text NOT NULL, status text NOT NULL DEFAULT 'active', \
             alert_type text, title text, message text, triggered_at timestamptz, \
             acknowledged_at timestamptz, acknowledged_by text, metadata jsonb DEFAULT '{}')"
        }
    }
}

pub async fn alerts_with_unreadable_times_are_called_and_listed(db: TestDb) {
    db.exec(hospital_table(db.backend)).await;
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[API_TOKEN]).await;
    let now = chrono::Utc::now();
    // (triggered_at, metadata) as SQL literals.
    let rows: Vec<(String, &str)> = match db.backend {
        Backend::Sqlite => vec![
            (now.timestamp().to_string(), "'{}'"),
            (format!("'{}'", now.timestamp()), "'{}'"),
            (now.timestamp_millis().to_string(), "'[1, 2]'"),
            (format!("'{}'", now.timestamp_millis()), "'{not json'"),
            (format!("'{}'", now.format("%m/%d/%Y %H:%M")), "'\"text\"'"),
            ("''".into(), "NULL"),
            ("NULL".into(), "'{}'"),
            ("'garbage\nwith a newline'".into(), "'{}'"),
            ("x'ff00'".into(), "'{}'"),
            ("1.5e400".into(), "'{}'"),
        ],
        Backend::Postgres => vec![
            ("NULL".into(), "'[1, 2]'"),
            ("'infinity'".into(), "'\"text\"'"),
            ("'-infinity'".into(), "'null'"),
        ],
    };
    for (n, (triggered_at, metadata)) in rows.iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO alerts (patient_id, severity, message, triggered_at, metadata) \
             VALUES ('P{n}', 'critical', 'Unreadable-{n}', {triggered_at}, {metadata})"
        ))
        .await;
    }
    // An acknowledgement time the hospital's own app wrote in a form nobody reads.
    if db.backend == Backend::Sqlite {
        db.exec(
            "INSERT INTO alerts (patient_id, severity, status, message, triggered_at, acknowledged_at) \
             VALUES ('P99', 'high', 'acknowledged', 'Handled', 'soon', 'yesterday')",
        )
        .await;
    }

    let calls = wait_for_calls(&db, &fake, rows.len()).await;
    let mut called: Vec<u64> = calls
        .iter()
        .filter_map(|c| token(c, "Unreadable-"))
        .collect();
    called.sort_unstable();
    assert_eq!(called, (0..rows.len() as u64).collect::<Vec<_>>());

    let list = app.get_json("/api/v1/alerts?status=all", TOKEN).await;
    let list = list.as_array().unwrap();
    assert_eq!(
        list.len(),
        rows.len() + usize::from(db.backend == Backend::Sqlite)
    );
    let again = app.get_json("/api/v1/alerts?status=all", TOKEN).await;
    for alert in list {
        let message = alert["message"].as_str().unwrap();
        let triggered: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(alert["triggered_at"].clone()).unwrap();
        // Read, or when alertcall first saw it: never far from now.
        assert!(
            (triggered - now).num_seconds().abs() < 120,
            "{message}: {triggered}"
        );
        if message == "Handled" {
            // Not critical, so never taken in: no first-seen time is recorded.
            continue;
        }
        let same = again
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == alert["id"])
            .unwrap();
        assert_eq!(
            same["triggered_at"], alert["triggered_at"],
            "{message}: stable"
        );
    }
    // The epoch forms are read exactly (to the second).
    if db.backend == Backend::Sqlite {
        for n in 0..4 {
            let alert = list
                .iter()
                .find(|a| a["message"] == format!("Unreadable-{n}"))
                .unwrap();
            let triggered: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(alert["triggered_at"].clone()).unwrap();
            assert_eq!(triggered.timestamp(), now.timestamp(), "form {n}");
        }
    }
    app.stop().await;
}
both_backends!(faults::alerts_with_unreadable_times_are_called_and_listed);

/// A small tmpfs for the database, filled and emptied at will. `None` where mounting is not
/// allowed (not root); the caller skips with the reason printed.
pub struct SmallDisk {
    pub dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    pub fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("alertcall-disk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root)",
                dir.display()
            );
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        let filler = dir.join("filler");
        Some(SmallDisk { dir, filler })
    }

    /// Writes until the disk is full.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(&self.filler).expect("create filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.write_all(&block) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
        // Whatever is left over (less than a block), too.
        while file.write_all(&[0u8; 512]).is_ok() {}
    }

    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove filler");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// POSTs an acknowledgement through the API.
pub async fn acknowledge(app: &TestApp, alert: &str) -> reqwest::StatusCode {
    app.http
        .post(app.url(&format!("/api/v1/alerts/{alert}/acknowledge")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST acknowledge")
        .status()
}

/// Waits until `/readyz` answers `status` with `database_writes` = `writes`.
pub async fn wait_ready(app: &TestApp, status: u16, writes: &str) {
    wait_until(
        &format!("/readyz answers {status} with database_writes {writes}"),
        WAIT,
        || async {
            let r = app.get("/readyz").await;
            let code = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            code == status && body["database_writes"] == writes
        },
    )
    .await;
}
