//! The bottom of the host: values every layer shares and the ports between layers. It does no
//! I/O of its own beyond [`private_fs`] (owner-only files), and depends on no other Toolgate
//! crate; every other crate may use it.
//!
//! - [`model`]: identifiers and values (roles, categories, callers, tool and plugin names),
//!   validated when they are deserialised.
//! - [`secret`]: the run [`Mode`] and [`Secret`], a value that never reaches a log.
//! - [`audit`]: the [`AuditEvent`] every layer records and the [`AuditSink`] it goes to; the
//!   [`AuditReader`] port through which a plugin reads the log.
//! - [`redact`]: parameters marked secret in a tool's schema, and scrubbing them from text.
//! - [`private_fs`]: directories and files only the server's user may read.
//! - [`code`]: [`Code`], the stable codes the host produces or compares across layers.

#![forbid(unsafe_code)]

pub mod audit;
pub mod code;
pub mod model;
pub mod private_fs;
pub mod redact;
pub mod secret;

use std::future::Future;
use std::pin::Pin;

pub use audit::{AuditEvent, AuditReader, AuditSink, MemoryAuditSink};
pub use code::Code;
pub use secret::{Mode, Secret};

/// A boxed future, for the object-safe ports between layers.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
