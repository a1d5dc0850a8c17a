//! The read side: what the board, an alert's page, the call history and on-call show, decided
//! once for the API, the dashboard and the CLI.

pub mod board;
