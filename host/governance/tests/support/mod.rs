//! What the governance integration tests share.

pub mod fake_tools;
pub mod harness;
