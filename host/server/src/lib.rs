//! Toolgate: a gateway through which people and AI agents run operations tools on servers
//! without holding the keys.
//!
//! Every request is authenticated, every action is decided by Rego policy, every tool is a
//! WebAssembly component with no authority but the host functions it was granted, and every
//! command those functions run ends in a locked-down Docker sandbox. The posture is fail closed:
//! on doubt or error, refuse.
//!
//! # Table of contents
//!
//! The host is one crate per boundary, under `host/`; each owns its configuration section, its
//! errors and its tests, and says in its own crate doc what it owns and what it may use. In the
//! order a request crosses them:
//!
//! 1. This crate, `toolgate-server`: [`cli`] (`toolgate serve`, `plugins`, `policy`, `users`,
//!    `doctor`) reads the one [`config`] document (TOML file + `TOOLGATE_*` environment) once and
//!    hands each crate its typed section; [`gateway`] assembles the running system from it;
//!    [`http`] is the axum API under `/api/v1`: connections and their deadlines, the
//!    authentication extractor, rate limits, the handlers, the single error model
//!    (`http/error.rs`) and the OpenAPI document.
//! 2. [`toolgate_telemetry`]: the `http.request` span and metrics around every request, logs,
//!    OpenTelemetry export, and the security event log.
//! 3. [`toolgate_auth`]: who is calling: scrypt passwords, HS256 tokens, API keys, and account
//!    provenance for the two-person rule.
//! 4. [`toolgate_governance`]: the one path every tool call takes: action decision, approval,
//!    invoke, verify, complete or roll back, crash recovery; action records and the hash-chained
//!    audit log, written by one journal (group commit).
//! 5. [`toolgate_policy`]: the Rego decision points, `action` (may this caller run this tool now?),
//!    `exec` (may this plugin run this argv?) and `host` (may it touch this unit or package?),
//!    evaluated in-process by regorus; fail closed.
//! 6. [`toolgate_runtime`]: the wasmtime runtime that loads tool components and implements the
//!    host side of the WIT world (`wit/`): a plugin has no authority but the host functions it was
//!    granted.
//! 7. [`toolgate_sandbox`]: the secure executor behind the `sandbox` host function: argv checks,
//!    the exec decision, then one locked-down Docker container per command.
//! 8. [`toolgate_system`]: the host system behind the `services`, `packages` and `filesystems`
//!    host functions: systemd and PackageKit over the system D-Bus (polkit decides on the host),
//!    the host's mount table.
//! 9. [`toolgate_store`]: everything durable, in one redb file, behind domain operations
//!    (accounts, the governance tables).
//! 10. [`toolgate_core`]: what every layer shares: identifiers and roles, the audit event and
//!     its sink, secrets and redaction, and the ports between layers (traits implemented above,
//!     used below), so that every arrow points down.
//!
//! Dependencies point down a plan, not down this list: telemetry and store use core only; auth
//! uses store; policy and sandbox use telemetry; system uses core; the runtime uses policy,
//! sandbox and system; governance uses all of those; this crate uses everything. The plan is one table, `ALLOWED` in this
//! crate's `tests/layering.rs`, checked against `cargo metadata`; a new edge is made there first.

pub mod cli;
pub mod config;
pub mod gateway;
pub mod http;
