//! busbar's schema registry: subjects and their versions, global schema ids, compatibility checks
//! (Avro; JSON Schema in `json_compat`), kept in an internal compacted log under the data directory.
//! Pure registry logic: no HTTP (the Confluent-compatible REST API lives in busbar-http).

pub mod json_compat;
