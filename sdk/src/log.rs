//! Structured logging into the host's logs and traces; the host tags each record with the
//! plugin, tool and action. Never log secrets: the host scrubs the values of the parameters
//! marked `writeOnly` or `secret`, and cannot tell which other strings are.

use crate::bindings::toolgate::plugin::log as wit;

pub use wit::Level;

/// Emit one record at `level` with key-value `fields`. In a native build (a plugin's unit tests)
/// the record goes to standard error instead, so tools that log can be tested outside the host.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    if cfg!(target_arch = "wasm32") {
        let fields: Vec<(String, String)> = fields.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
        wit::log(level, message, &fields);
    } else {
        eprintln!("{level:?}: {message} {fields:?}");
    }
}

/// Very detailed diagnostics.
pub fn trace(message: &str) {
    log(Level::Trace, message, &[]);
}

/// Diagnostics.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Normal operation.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Something unexpected that the tool handled.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Something failed.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}
