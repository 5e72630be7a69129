//! Client subcommands, one file each; all talk to the server's HTTP API through `client::Client`.

pub mod acl;
pub mod consume;
pub mod dlq;
pub mod group;
pub mod produce;
pub mod quota;
pub mod rule;
pub mod schema;
pub mod subscription;
pub mod tls;
pub mod topic;
pub mod user;
