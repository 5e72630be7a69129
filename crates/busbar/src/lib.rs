//! The `busbar` binary's library part: its typed configuration (`busbar serve`'s defaults,
//! `busbar.toml`, `BUSBAR_*` and flags). A library so the fuzz targets can drive the config parser;
//! the rest of the binary lives in `main.rs`.

pub mod audit;
pub mod auth_config;
pub mod cluster_config;
pub mod cluster_import;
pub mod config;
mod config_layers;
pub mod dn;
pub mod kafka_config;
pub mod listeners;
pub mod otlp;
pub mod schema_config;
pub mod tls;
