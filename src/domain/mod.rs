//! Pure types and rules: no I/O, no async, no clock. Every function here takes
//! the time it needs as an argument, so the rules are testable without sleeping.

pub mod alert;
pub mod call;
pub mod escalation;
pub mod intent;
pub mod menu;
pub mod message;
pub mod phone;
pub mod reach;
pub mod schedule;
pub mod test_call;
pub mod timeline;
pub mod timestamp;
