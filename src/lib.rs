//! alertcall: phones the nurse on call when a critical alert lands in the hospital
//! database, and takes "press 1" as the acknowledgement.

pub mod analytics;
pub mod auth;
pub mod cli;
pub mod config;
#[cfg(test)]
mod documented;
pub mod domain;
pub mod engine;
pub mod exit;
pub mod hl7;
pub mod http;
pub mod log_line;
pub mod metrics;
pub mod server;
pub mod startup;
pub mod store;
pub mod telephony;
pub mod views;
