//! Integration tests: the real server on a random port, real Postgres and SQLite, a local
//! fake Vonage that checks requests against the provider's contract.

mod analytics;
mod browser;
mod cli;
mod core;
mod cutover;
mod dashboard;
mod db;
mod decline;
mod escalation;
mod fake_twilio;
mod fake_vonage;
mod faults;
mod helpers;
mod hl7;
mod logs;
mod openapi_fuzz;
mod process;
mod providers;
mod reach;
mod simulator;
mod talkback;
mod test_call;
mod timeline;
mod torture;
mod twilio;
mod unreached;
mod webhooks;

/// Runs a scenario `async fn name(db: TestDb)` once on Postgres and once on SQLite.
#[macro_export]
macro_rules! both_backends {
    ($module:ident :: $name:ident) => {
        mod $name {
            use $crate::db::{Backend, TestDb};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = TestDb::new(Backend::Postgres).await {
                    $crate::$module::$name(db).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
                $crate::$module::$name(db).await;
            }
        }
    };
}
