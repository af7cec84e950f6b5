//! Toolgate: a gateway through which people and AI agents run operations tools on servers
//! without holding the keys.
//!
//! Every request is authenticated, every action is decided by Rego policy, every tool is a
//! WebAssembly component with no authority but the host functions it was granted, and every
//! command those functions run ends in a locked-down Docker sandbox. The posture is fail closed:
//! on doubt or error, refuse.
//!
//! # Layout
//!
//! - [`config`]: the one configuration document (TOML file + `TOOLGATE_*` environment), read once
//!   at start-up and handed down as typed sections.
//! - [`model`]: identifiers and values every layer shares (roles, categories, callers).
//! - [`auth`]: passwords (scrypt), tokens (JWT HS256), API keys.
//! - [`store`]: everything durable, in one redb file; every table is declared in `store/tables.rs`.
//! - [`policy`]: the Rego decision points (`action`, `exec`) evaluated in-process by regorus.
//! - [`plugins`]: the wasmtime runtime that loads tool components and implements the host side of
//!   the WIT world in `wit/`.
//! - [`sandbox`]: the secure executor: argv checks, then a Docker container per command.
//! - [`gateway`]: the running system (policy engine, executor, container engine, plugin
//!   runtime, audit sink) assembled once from the configuration.
//! - [`governance`]: the execute pipeline (decision, approval, invoke, verify, rollback), action
//!   records, and the hash-chained audit log, written durably by one journal (group commit).
//! - [`telemetry`]: logs, OpenTelemetry traces over OTLP, metrics over OTLP and `GET /metrics`.
//! - [`http`]: the axum API under `/api/v1`, its single error model and its OpenAPI document.
//! - [`cli`]: the `toolgate` command line (`serve`, `plugins`, `policy`, `users`, `doctor`).

pub mod cli;
pub mod config;
pub mod gateway;
pub mod http;
