//! busbar's schema registry: subjects and their versions, global schema ids, compatibility levels
//! and modes, with Confluent Schema Registry's rules and error codes, kept in an internal
//! compacted log under the data directory (`store`) and in memory (`registry`). Avro by hand
//! (`avro`), JSON Schema compatibility in `json_compat`, PROTOBUF (parsing, compatibility, the
//! wire format's message indexes, JSON mapping) in `protobuf`.
//! Pure registry logic: no HTTP (the REST API lives in busbar-http's `schema_registry`).

pub mod avro;
pub mod enforce;
pub mod error;
pub mod json_compat;
pub mod json_validate;
pub mod model;
pub mod protobuf;
pub mod registry;
pub mod schema;
pub mod store;

pub use error::{Result, SchemaError};
pub use model::{Compatibility, Limits, Mode, Reference, SchemaInput, SchemaType, Version};
pub use registry::{IdSchema, Registration, Registry};

/// At most 100 bytes of a client-given string, for messages (a huge subject is not echoed whole).
pub fn shown(s: &str) -> String {
    if s.len() <= 100 {
        return s.to_string();
    }
    let mut end = 100;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
