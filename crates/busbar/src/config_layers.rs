//! How the configuration's layers become one TOML table (`config.rs` decodes and validates it):
//! tables merged key by key, a later layer replacing what it names; `BUSBAR_*` environment
//! variables read into a table; topic defaults kept as the text of any TOML scalar.

use anyhow::{bail, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::{Table, Value};

/// A map of TOML strings, integers, floats or booleans, each kept as its text.
pub(crate) fn scalar_texts<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, ScalarText>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// The text of a TOML string, integer, float or boolean.
struct ScalarText(String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

pub(crate) fn merge(base: &mut Table, over: Table, path: &str) -> Result<()> {
    let given: Vec<String> = over.keys().cloned().collect();
    for (k, v) in over {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o, &here)?,
            (Some(Value::Table(_)), _) => bail!("`{here}` must be a table"),
            (_, v) => {
                if path == "topic_defaults" {
                    drop_shadowed_default(base, &k, &given);
                }
                base.insert(k, v);
            }
        }
    }
    Ok(())
}

/// A schema key alias set in `[topic_defaults]` (`confluent.value.schema.validation`, ...)
/// replaces the default of busbar's own key, which would otherwise win over it (busbar's key is
/// applied after its aliases); unless the same layer sets busbar's key too.
fn drop_shadowed_default(defaults: &mut Table, key: &str, given: &[String]) {
    let aliases = busbar_broker::config::SCHEMA_KEY_ALIASES;
    if let Some((_, own)) = aliases.iter().find(|(a, _)| *a == key) {
        if !given.iter().any(|g| g == own) {
            defaults.remove(*own);
        }
    }
}

/// A TOML value from an environment string: an integer or boolean when it reads as one.
fn env_value(raw: &str) -> Value {
    raw.parse::<i64>()
        .map(Value::Integer)
        .or_else(|_| raw.parse::<bool>().map(Value::Boolean))
        .unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// `BUSBAR_<SECTION>_<KEY>` → `section.key`; `BUSBAR_TOPIC_<NAME>` → `topic_defaults["name"]`
/// with `_` read as `.` (`BUSBAR_TOPIC_RETENTION_MS` → `retention.ms`).
pub(crate) fn env_table(vars: impl Iterator<Item = (String, String)>) -> Result<Table> {
    let mut t = Table::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("BUSBAR_") else {
            continue;
        };
        let rest = rest.to_ascii_lowercase();
        if rest == "data_dir" {
            t.insert("data_dir".into(), Value::String(raw));
        } else if let Some(k) = rest.strip_prefix("topic_") {
            let entry = t
                .entry("topic_defaults")
                .or_insert_with(|| Value::Table(Table::new()));
            entry
                .as_table_mut()
                .expect("table")
                .insert(k.replace('_', "."), Value::String(raw));
        } else if let Some((section, key)) = match rest.as_str() {
            "kafka_listeners" => Some(("kafka", "listeners")),
            "auth_super_users" => Some(("auth", "super_users")),
            _ => None,
        } {
            // A list, comma-separated: BUSBAR_KAFKA_LISTENERS=SASL_PLAINTEXT://0.0.0.0:9094
            let items = comma_list(&raw);
            let entry = t
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            entry
                .as_table_mut()
                .expect("table")
                .insert(key.into(), items);
        } else if let Some(list) = rest.strip_prefix("bus_targets_") {
            // A list, comma-separated: BUSBAR_BUS_TARGETS_DENY=10.0.0.0/8,db.internal
            let items = comma_list(&raw);
            let bus = t.entry("bus").or_insert_with(|| Value::Table(Table::new()));
            let targets = bus
                .as_table_mut()
                .expect("table")
                .entry("targets")
                .or_insert_with(|| Value::Table(Table::new()));
            targets
                .as_table_mut()
                .expect("table")
                .insert(list.into(), items);
        } else if let Some(key) = rest.strip_prefix("schema_registry_") {
            let entry = t
                .entry("schema_registry")
                .or_insert_with(|| Value::Table(Table::new()));
            entry
                .as_table_mut()
                .expect("table")
                .insert(key.into(), env_value(&raw));
        } else if let Some((section, key)) = rest.split_once('_').filter(|(s, _)| {
            matches!(
                *s,
                "http"
                    | "kafka"
                    | "broker"
                    | "bus"
                    | "auth"
                    | "tls"
                    | "limits"
                    | "audit"
                    | "log"
                    | "tracing"
                    | "cluster"
            )
        }) {
            let entry = t
                .entry(section)
                .or_insert_with(|| Value::Table(Table::new()));
            entry
                .as_table_mut()
                .expect("table")
                .insert(key.into(), env_value(&raw));
        } else if !matches!(
            rest.as_str(),
            "seed"
                | "seeds"
                | "server"
                | "output"
                | "admin_password"
                | "user"
                | "password"
                | "token"
                | "ca_file"
        ) {
            bail!("environment variable {name} is not a busbar setting (see busbar.toml.example)");
        }
    }
    Ok(t)
}

/// A comma-separated environment value as a TOML array of strings (blank items dropped).
fn comma_list(raw: &str) -> Value {
    let items = raw.split(',').map(str::trim).filter(|s| !s.is_empty());
    Value::Array(items.map(|s| Value::String(s.to_string())).collect())
}
