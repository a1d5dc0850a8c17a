//! The real `alertcall serve` binary as a child process, for tests that kill it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::db::TestDb;
use crate::fake_vonage::FakeVonage;
use crate::helpers::wait_until;

pub struct Serve {
    child: Child,
    pub addr: String,
}

impl Serve {
    pub async fn start(db: &TestDb, fake: &FakeVonage, extra: &[(&str, &str)]) -> Serve {
        Serve::spawn(db, fake, extra, None, None, None).await
    }

    /// Like `start`, with the process's soft and hard limits on open files at `files` (as
    /// systemd's default soft limit of 1,024 would be, without the unit's `LimitNOFILE=`).
    pub async fn start_with_file_limit(
        db: &TestDb,
        fake: &FakeVonage,
        extra: &[(&str, &str)],
        files: u64,
    ) -> Serve {
        Serve::spawn(db, fake, extra, None, Some(files), None).await
    }

    /// Like `start`, with everything the process logs written to `log`.
    pub async fn start_logging(
        db: &TestDb,
        fake: &FakeVonage,
        extra: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Serve {
        let file = std::fs::File::create(log).expect("create the log file");
        Serve::spawn(db, fake, extra, Some(file), None, None).await
    }

    /// Like `start_logging`, run from `dir` (where it looks for alertcall.toml).
    pub async fn start_logging_in(
        db: &TestDb,
        fake: &FakeVonage,
        extra: &[(&str, &str)],
        log: &std::path::Path,
        dir: &std::path::Path,
    ) -> Serve {
        let file = std::fs::File::create(log).expect("create the log file");
        Serve::spawn(db, fake, extra, Some(file), None, Some(dir)).await
    }

    async fn spawn(
        db: &TestDb,
        fake: &FakeVonage,
        extra: &[(&str, &str)],
        log: Option<std::fs::File>,
        files: Option<u64>,
        dir: Option<&std::path::Path>,
    ) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_alertcall"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("ALERTCALL_LISTEN", &addr)
            .env("ALERTCALL_CALLS_PER_SECOND", "0")
            .env("ALERTCALL_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
            .env(
                "RUST_LOG",
                std::env::var("ALERTCALL_TEST_LOG").unwrap_or("error".into()),
            )
            .envs(fake.env())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        match log {
            Some(file) => {
                cmd.stderr(file);
            }
            None if std::env::var("ALERTCALL_TEST_LOG").is_err() => {
                cmd.stderr(Stdio::null());
            }
            None => {}
        }
        if let Some(files) = files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: files,
                rlim_max: files,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().expect("start alertcall serve");
        let serve = Serve { child, addr };
        let client = reqwest::Client::new();
        let url = format!("http://{}/healthz", serve.addr);
        wait_until("alertcall serve is up", Duration::from_secs(20), || async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        serve
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `kill -9`: no shutdown, no cleanup.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `kill -HUP`.
    pub fn hang_up_signal(&self) {
        self.signal("HUP");
    }

    /// `kill -<name>`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -{name}: {e}"));
        assert!(status.success());
    }

    /// Waits until the process has ended on its own, and returns how.
    pub async fn exited(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let child = &mut self.child;
        wait_until("alertcall serve exits", deadline, || {
            std::future::ready(matches!(child.try_wait(), Ok(Some(_))))
        })
        .await;
        self.child.wait().expect("the exit status")
    }

    /// Resident memory in kB (Linux).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Peak resident memory in kB (Linux's VmHWM).
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the long versions of the torture tests were asked for.
pub fn full() -> bool {
    std::env::var("ALERTCALL_TORTURE").as_deref() == Ok("full")
}
