//! Everything durable, in one redb file under `data_dir`. Every table is declared in
//! `store/tables.rs`; writes are scoped and committed in one place; blocking calls run off the
//! async runtime.
