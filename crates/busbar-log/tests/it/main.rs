//! All of busbar-log's integration tests in one binary (one link instead of one per file); each
//! file is a module: `cargo test -p busbar-log --test it crash_sim::` runs one file.

mod append_read;
mod cleaning;
mod common;
mod compaction_codecs;
mod compaction_passes;
mod copied;
mod crash_sim;
mod delete_horizon;
mod descriptors;
mod format_fixtures;
mod hostile_batches;
mod kill9;
mod lock_io;
mod maintenance;
mod max_timestamp;
mod model;
mod recovery;
