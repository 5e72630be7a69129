//! `busbar schema register|get|list|delete|check|config|mode`: the schema registry through the
//! HTTP API's mount of it (`--server` + `/schema-registry`, Confluent's REST API), with the same
//! credentials, output styles and exit codes as the other client commands.
//!
//! Everything the command line says is checked before any request: the schema file (readable,
//! UTF-8, not empty, at most [`SCHEMA_FILE_BYTES_MAX`]), `--reference` syntax, versions, levels
//! and modes. The registry's refusals keep its `error_code` and message (exit 1). `--output json`
//! prints the registry's answer as it sent it (Confluent's shapes: lists, numbers, objects).

use crate::client::{cell, enc, outln, table, write_raw, CliError, CliResult, Client, Output};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the HTTP API serves the registry.
const PREFIX: &str = "/schema-registry";
/// The media type of registry requests (Confluent's; the registry reads any JSON body).
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Largest schema file read, in bytes: the most `schema_registry.schema_bytes_max` may be set to,
/// so a larger file could never be registered (a server set lower answers 42209 itself).
pub const SCHEMA_FILE_BYTES_MAX: u64 = 1 << 20;
/// Largest version or id (Confluent's: a Java int).
const NUMBER_MAX: u32 = i32::MAX as u32;

/// A schema's format (`schemaType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum SchemaType {
    Avro,
    Json,
    Protobuf,
}

/// A compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// A registry mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Mode {
    Readwrite,
    Readonly,
    Import,
}

/// The name a value enum has on the command line and in the registry (`BACKWARD_TRANSITIVE`).
fn name_of(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// The schema a command sends: a file, its format and its references.
#[derive(Debug, Clone, Args)]
pub struct SchemaFile {
    /// The schema file (`-`: standard input); at most 1 MiB, the largest
    /// schema_registry.schema_bytes_max.
    #[arg(short, long)]
    file: PathBuf,
    /// The schema's format.
    #[arg(long = "type", value_enum, ignore_case = true, default_value_t = SchemaType::Avro)]
    schema_type: SchemaType,
    /// A reference to another subject's schema, `name=subject:version` (version: a number or
    /// latest); repeatable, sent in the order given.
    #[arg(long = "reference", value_name = "NAME=SUBJECT:VERSION")]
    references: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SchemaCmd {
    /// Register a schema under a subject: prints its version and id (a schema the subject
    /// already has answers its existing version).
    Register {
        subject: String,
        #[command(flatten)]
        schema: SchemaFile,
        /// Let the registry normalize the schema before comparing it (normalize=true).
        #[arg(long)]
        normalize: bool,
    },
    /// Show a subject's version (latest unless --version), or the schema of an id (--id).
    Get {
        /// The subject (not with --id).
        #[arg(conflicts_with = "id")]
        subject: Option<String>,
        /// The version: a number or latest.
        #[arg(long, value_parser = version_arg, default_value = "latest")]
        version: String,
        /// A schema id, instead of a subject.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=NUMBER_MAX as i64))]
        id: Option<u32>,
        /// Print only the schema text, as the registry answers it.
        #[arg(long)]
        schema_only: bool,
        /// Also find a soft-deleted version.
        #[arg(long, conflicts_with = "id")]
        deleted: bool,
    },
    /// List subjects, or a subject's versions when one is named.
    List {
        /// List this subject's versions.
        subject: Option<String>,
        /// Include soft-deleted subjects (or versions).
        #[arg(long)]
        deleted: bool,
        /// Only subjects starting with this.
        #[arg(long, conflicts_with = "subject")]
        prefix: Option<String>,
    },
    /// Delete a subject (every version) or one version: a soft delete, undone by registering
    /// again; --permanent removes what is soft-deleted for good.
    Delete {
        subject: String,
        /// Only this version: a number or latest.
        #[arg(long, value_parser = version_arg)]
        version: Option<String>,
        /// Hard delete (the subject or version must be soft-deleted first).
        #[arg(long)]
        permanent: bool,
    },
    /// Check a schema against a subject (exit 0 when compatible, 1 with the registry's reasons
    /// when not). Without --version, against the versions the subject's level names.
    Check {
        subject: String,
        #[command(flatten)]
        schema: SchemaFile,
        /// Check against this version only: a number or latest.
        #[arg(long, value_parser = version_arg)]
        version: Option<String>,
        /// Also say the compatibility level the check applied.
        #[arg(long)]
        verbose: bool,
    },
    /// Show, set or remove the compatibility level, global or of a subject.
    Config {
        /// The subject (none: the global level).
        subject: Option<String>,
        /// Set the level.
        #[arg(long, value_enum, ignore_case = true, conflicts_with = "delete")]
        set: Option<Level>,
        /// Remove the level (a subject then follows the global one).
        #[arg(long)]
        delete: bool,
    },
    /// Show, set or remove the mode (READWRITE, READONLY, IMPORT), global or of a subject.
    Mode {
        /// The subject (none: the global mode).
        subject: Option<String>,
        /// Set the mode.
        #[arg(long, value_enum, ignore_case = true, conflicts_with = "delete")]
        set: Option<Mode>,
        /// With --set IMPORT: even when the registry or subject holds schemas.
        #[arg(long, requires = "set")]
        force: bool,
        /// Remove the mode (a subject then follows the global one).
        #[arg(long)]
        delete: bool,
    },
}

/// A version as the registry's paths take it: `latest`, or 1 to 2^31-1 (`-1` reads as latest).
fn version_arg(text: &str) -> Result<String, String> {
    if text.eq_ignore_ascii_case("latest") || text == "-1" {
        return Ok("latest".into());
    }
    match text.parse::<u32>() {
        Ok(n) if (1..=NUMBER_MAX).contains(&n) => Ok(n.to_string()),
        _ => Err(format!(
            "{text:?} is not latest or a version from 1 to {NUMBER_MAX}"
        )),
    }
}

/// One `--reference name=subject:version` as the registry's reference object.
fn reference(text: &str) -> CliResult<Value> {
    let bad = |why: &str| {
        CliError::Usage(format!(
            "--reference {text:?} is not name=subject:version ({why})"
        ))
    };
    let (name, rest) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let (subject, version) = rest.rsplit_once(':').ok_or_else(|| bad("no `:version`"))?;
    if name.is_empty() || subject.is_empty() {
        return Err(bad("an empty name or subject"));
    }
    let version = match version_arg(version).map_err(|e| bad(&format!("version {e}")))? {
        v if v == "latest" => -1,
        v => v.parse::<i64>().map_err(|_| bad("version"))?,
    };
    Ok(json!({"name": name, "subject": subject, "version": version}))
}

/// The text of the schema file `path` (`-`: standard input), read no further than the limit.
fn read_schema(path: &Path) -> CliResult<String> {
    let shown = path.display();
    let bad = |why: String| CliError::Usage(format!("--file {shown}: {why}"));
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        (std::io::stdin().lock())
            .take(SCHEMA_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
    } else {
        let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read ({e})")))?;
        file.take(SCHEMA_FILE_BYTES_MAX + 1).read_to_end(&mut bytes)
    };
    read.map_err(|e| bad(format!("cannot read ({e})")))?;
    if bytes.len() as u64 > SCHEMA_FILE_BYTES_MAX {
        return Err(bad(format!(
            "larger than {SCHEMA_FILE_BYTES_MAX} bytes, the most \
             schema_registry.schema_bytes_max allows"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Err(bad("empty".into()));
    }
    Ok(text)
}

/// The registry's request body for `s`: schema, schemaType (when not AVRO) and references.
fn schema_body(s: &SchemaFile) -> CliResult<Value> {
    let references = (s.references.iter())
        .map(|r| reference(r))
        .collect::<CliResult<Vec<_>>>()?;
    let mut body = json!({"schema": read_schema(&s.file)?});
    if s.schema_type != SchemaType::Avro {
        body["schemaType"] = json!(name_of(s.schema_type));
    }
    if !references.is_empty() {
        body["references"] = json!(references);
    }
    Ok(body)
}

/// A call to the registry at `path` (below its mount): its answer, which `ok` says has the shape
/// the registry's answers to it have (else the server is not busbar), and the answer's text.
fn call(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
    ok: impl Fn(&Value) -> bool,
) -> CliResult<(Value, String)> {
    let body = body.map(|b| (MEDIA_TYPE, b.to_string().into_bytes()));
    let path = format!("{PREFIX}{path}");
    let (v, text) = c.call_any(method, &path, body)?;
    match ok(&v) {
        true => Ok((v, text)),
        false => Err(c.not_busbar(method, &path, &v.to_string())),
    }
}

/// The answer `text` as the registry sent it, on one line (`--output json`).
fn print_raw(text: &str) -> CliResult<()> {
    let raw: Box<RawValue> =
        serde_json::from_str(text).map_err(|e| CliError::Output(e.to_string()))?;
    write_raw(&raw)
}

/// Shapes of answers.
fn has_id(v: &Value) -> bool {
    v["id"].is_u64()
}

fn has_schema(v: &Value) -> bool {
    v["schema"].is_string()
}

fn strings(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

fn numbers(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_u64))
}

/// `/subjects/{s}`.
fn subject_path(subject: &str) -> String {
    format!("/subjects/{}", enc(subject))
}

/// `?a=b&c=d` of the pairs given (empty when none).
fn query(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = (pairs.iter())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    match parts.is_empty() {
        true => String::new(),
        false => format!("?{}", parts.join("&")),
    }
}

pub fn run(c: &Client, cmd: SchemaCmd) -> CliResult<()> {
    match cmd {
        SchemaCmd::Register {
            subject,
            schema,
            normalize,
        } => register(c, &subject, &schema, normalize),
        SchemaCmd::Get {
            subject,
            version,
            id,
            schema_only,
            deleted,
        } => match (id, subject) {
            (Some(id), _) => get_id(c, id, schema_only),
            (None, Some(s)) => get_version(c, &s, &version, schema_only, deleted),
            (None, None) => Err(CliError::Usage("give a subject or --id".into())),
        },
        SchemaCmd::List {
            subject: Some(s),
            deleted,
            ..
        } => list_versions(c, &s, deleted),
        SchemaCmd::List {
            subject: None,
            deleted,
            prefix,
        } => list_subjects(c, deleted, prefix.as_deref()),
        SchemaCmd::Delete {
            subject,
            version,
            permanent,
        } => delete(c, &subject, version.as_deref(), permanent),
        SchemaCmd::Check {
            subject,
            schema,
            version,
            verbose,
        } => check(c, &subject, &schema, version.as_deref(), verbose),
        SchemaCmd::Config {
            subject,
            set,
            delete,
        } => {
            let set = set.map(|l| json!({"compatibility": name_of(l)}));
            setting(c, &CONFIG, subject.as_deref(), set, false, delete)
        }
        SchemaCmd::Mode {
            subject,
            set,
            force,
            delete,
        } => {
            let set = set.map(|m| json!({"mode": name_of(m)}));
            setting(c, &MODE, subject.as_deref(), set, force, delete)
        }
    }
}

fn register(c: &Client, subject: &str, schema: &SchemaFile, normalize: bool) -> CliResult<()> {
    let body = schema_body(schema)?;
    let q = if normalize { "?normalize=true" } else { "" };
    let path = format!("{}/versions{q}", subject_path(subject));
    let (v, text) = call(c, "POST", &path, Some(&body), has_id)?;
    if c.output == Output::Json {
        return print_raw(&text);
    }
    match v.get("version") {
        Some(version) => outln!("{subject}: version {version}, id {}", v["id"]),
        None => outln!("{subject}: id {}", v["id"]),
    }
    Ok(())
}

/// Prints a schema and what the registry says about it (`head`: its first line's fields).
fn show_schema(head: &[(&str, String)], v: &Value) {
    let head: Vec<String> = head.iter().map(|(k, v)| format!("{k} {v}")).collect();
    outln!("{}", head.join("  "));
    let refs = v["references"].as_array().cloned().unwrap_or_default();
    if !refs.is_empty() {
        let rows = (refs.iter())
            .map(|r| vec![cell(&r["name"]), cell(&r["subject"]), cell(&r["version"])])
            .collect();
        table(&["reference", "subject", "version"], rows);
    }
    outln!("{}", v["schema"].as_str().unwrap_or_default());
}

/// The `schemaType` of an answer (absent: AVRO, as Confluent answers).
fn type_of(v: &Value) -> String {
    v["schemaType"].as_str().unwrap_or("AVRO").to_string()
}

fn get_version(
    c: &Client,
    subject: &str,
    version: &str,
    schema_only: bool,
    deleted: bool,
) -> CliResult<()> {
    let q = if deleted { "?deleted=true" } else { "" };
    let path = format!("{}/versions/{version}{q}", subject_path(subject));
    let (v, text) = call(c, "GET", &path, None, has_schema)?;
    if schema_only {
        outln!("{}", v["schema"].as_str().unwrap_or_default());
        return Ok(());
    }
    if c.output == Output::Json {
        return print_raw(&text);
    }
    let mut head = vec![
        ("subject", cell(&v["subject"])),
        ("version", cell(&v["version"])),
        ("id", cell(&v["id"])),
        ("type", type_of(&v)),
    ];
    if v["deleted"] == json!(true) {
        head.push(("deleted", "yes".into()));
    }
    show_schema(&head, &v);
    Ok(())
}

fn get_id(c: &Client, id: u32, schema_only: bool) -> CliResult<()> {
    let path = format!("/schemas/ids/{id}");
    let (v, text) = call(c, "GET", &path, None, has_schema)?;
    if schema_only {
        outln!("{}", v["schema"].as_str().unwrap_or_default());
        return Ok(());
    }
    if c.output == Output::Json {
        return print_raw(&text);
    }
    let used = format!("{path}/versions");
    let (holders, _) = call(c, "GET", &used, None, Value::is_array)?;
    let used: Vec<String> = (holders.as_array().into_iter().flatten())
        .map(|h| format!("{} v{}", cell(&h["subject"]), cell(&h["version"])))
        .collect();
    let used = if used.is_empty() {
        "-".into()
    } else {
        used.join(", ")
    };
    show_schema(
        &[("id", id.to_string()), ("type", type_of(&v)), ("in", used)],
        &v,
    );
    Ok(())
}

/// The registry's subjects (`deleted`: soft-deleted ones too) starting with `prefix`.
fn subjects(c: &Client, deleted: bool, prefix: Option<&str>) -> CliResult<(Vec<String>, String)> {
    let mut q = Vec::new();
    if deleted {
        q.push(("deleted", "true".to_string()));
    }
    if let Some(p) = prefix {
        q.push(("subjectPrefix", p.to_string()));
    }
    let path = format!("/subjects{}", query(&q));
    let (v, text) = call(c, "GET", &path, None, strings)?;
    let list = (v.as_array().into_iter().flatten())
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect();
    Ok((list, text))
}

fn list_subjects(c: &Client, deleted: bool, prefix: Option<&str>) -> CliResult<()> {
    let (list, text) = subjects(c, deleted, prefix)?;
    if c.output == Output::Json {
        return print_raw(&text);
    }
    if !deleted {
        table(&["subject"], list.into_iter().map(|s| vec![s]).collect());
        return Ok(());
    }
    let (live, _) = subjects(c, false, prefix)?;
    let rows = (list.into_iter())
        .map(|s| {
            let gone = if live.contains(&s) { "-" } else { "yes" };
            vec![s, gone.to_string()]
        })
        .collect();
    table(&["subject", "deleted"], rows);
    Ok(())
}

fn list_versions(c: &Client, subject: &str, deleted: bool) -> CliResult<()> {
    let q = if deleted { "?deleted=true" } else { "" };
    let path = format!("{}/versions{q}", subject_path(subject));
    let (v, text) = call(c, "GET", &path, None, numbers)?;
    if c.output == Output::Json {
        return print_raw(&text);
    }
    // One request per version, bounded by the registry's versions_per_subject_max.
    let mut rows = Vec::new();
    for n in v.as_array().into_iter().flatten() {
        let one = format!("{}/versions/{n}{q}", subject_path(subject));
        let (d, _) = call(c, "GET", &one, None, has_id)?;
        let gone = if d["deleted"] == json!(true) {
            "yes"
        } else {
            "-"
        };
        rows.push(vec![
            n.to_string(),
            cell(&d["id"]),
            type_of(&d),
            gone.into(),
        ]);
    }
    table(&["version", "id", "type", "deleted"], rows);
    Ok(())
}

fn delete(c: &Client, subject: &str, version: Option<&str>, permanent: bool) -> CliResult<()> {
    let q = if permanent { "?permanent=true" } else { "" };
    let path = match version {
        Some(v) => format!("{}/versions/{v}{q}", subject_path(subject)),
        None => format!("{}{q}", subject_path(subject)),
    };
    let (v, text) = call(c, "DELETE", &path, None, |v| v.is_u64() || numbers(v))?;
    if c.output == Output::Json {
        return print_raw(&text);
    }
    let how = if permanent {
        "permanently deleted"
    } else {
        "deleted (soft; --permanent removes it for good)"
    };
    let versions: Vec<String> = match v.as_array() {
        Some(list) => list.iter().map(cell).collect(),
        None => vec![cell(&v)],
    };
    let word = if versions.len() == 1 {
        "version"
    } else {
        "versions"
    };
    outln!("{subject}: {word} {} {how}", versions.join(", "));
    Ok(())
}

fn check(
    c: &Client,
    subject: &str,
    schema: &SchemaFile,
    version: Option<&str>,
    verbose: bool,
) -> CliResult<()> {
    let body = schema_body(schema)?;
    let against = match version {
        Some(v) => format!("/versions/{v}"),
        None => "/versions".into(),
    };
    let path = format!(
        "/compatibility{}{against}?verbose=true",
        subject_path(subject)
    );
    let (v, text) = call(c, "POST", &path, Some(&body), |v| {
        v["is_compatible"].is_boolean()
    })?;
    let compatible = v["is_compatible"] == json!(true);
    if c.output == Output::Json {
        print_raw(&text)?;
    } else {
        let which = version.map_or("the versions its compatibility level checks".into(), |v| {
            format!("version {v}")
        });
        let verdict = if compatible {
            "compatible"
        } else {
            "incompatible"
        };
        outln!("{verdict} with {subject} ({which})");
        if verbose {
            let level = effective(c, &CONFIG, Some(subject))?;
            outln!("level {}{}", level.value, level.source());
        }
        for m in v["messages"].as_array().into_iter().flatten() {
            outln!(
                "  {}",
                m.as_str().map_or_else(|| m.to_string(), str::to_string)
            );
        }
    }
    match compatible {
        true => Ok(()),
        false => Err(CliError::Refused(format!(
            "the schema is not compatible with {subject}"
        ))),
    }
}

/// A registry setting with a global value and subject overrides: the compatibility level
/// (`/config`) or the mode (`/mode`).
struct Setting {
    /// `/config` or `/mode`.
    path: &'static str,
    /// The field of its answers to reads and deletes (`compatibilityLevel`, `mode`).
    field: &'static str,
    /// The field of its answers to a change, as of its request (`compatibility`, `mode`).
    set_field: &'static str,
    /// What it is called in output.
    what: &'static str,
    /// The registry's code for "this subject has none of its own".
    unset_code: &'static str,
}

const CONFIG: Setting = Setting {
    path: "/config",
    field: "compatibilityLevel",
    set_field: "compatibility",
    what: "level",
    unset_code: "40408",
};

const MODE: Setting = Setting {
    path: "/mode",
    field: "mode",
    set_field: "mode",
    what: "mode",
    unset_code: "40409",
};

impl Setting {
    fn at(&self, subject: Option<&str>) -> String {
        match subject {
            Some(s) => format!("{}/{}", self.path, enc(s)),
            None => self.path.to_string(),
        }
    }
}

/// A setting's value in force for a subject, and whether it is the global one.
struct Effective {
    value: String,
    global: bool,
    text: String,
}

impl Effective {
    fn source(&self) -> &'static str {
        if self.global {
            " (global)"
        } else {
            ""
        }
    }
}

/// The value of `s` in force for `subject` (the global one when it has none, or none is named).
fn effective(c: &Client, s: &Setting, subject: Option<&str>) -> CliResult<Effective> {
    let read = |path: String| -> CliResult<(String, String)> {
        let (v, text) = call(c, "GET", &path, None, |v| v[s.field].is_string())?;
        Ok((v[s.field].as_str().unwrap_or_default().to_string(), text))
    };
    let own = match subject {
        Some(_) => read(s.at(subject)),
        None => {
            return read(s.at(None)).map(|(value, text)| Effective {
                value,
                global: true,
                text,
            })
        }
    };
    match own {
        Ok((value, text)) => Ok(Effective {
            value,
            global: false,
            text,
        }),
        Err(CliError::Server { code, .. }) if code == s.unset_code => {
            let (value, text) = read(s.at(None))?;
            Ok(Effective {
                value,
                global: true,
                text,
            })
        }
        Err(e) => Err(e),
    }
}

/// `config` and `mode`: show (`set` none, `delete` false), set or remove setting `s`.
fn setting(
    c: &Client,
    s: &Setting,
    subject: Option<&str>,
    set: Option<Value>,
    force: bool,
    delete: bool,
) -> CliResult<()> {
    let name = subject.unwrap_or("global");
    let (v, text) = match (set, delete) {
        (Some(body), _) => {
            let q = if force { "?force=true" } else { "" };
            let path = format!("{}{q}", s.at(subject));
            let (v, text) = call(c, "PUT", &path, Some(&body), |v| v[s.set_field].is_string())?;
            (v[s.set_field].clone(), text)
        }
        (None, true) => {
            let (v, text) = call(c, "DELETE", &s.at(subject), None, |v| {
                v[s.field].is_string()
            })?;
            (v[s.field].clone(), text)
        }
        (None, false) => {
            let e = effective(c, s, subject)?;
            match c.output {
                Output::Json => print_raw(&e.text)?,
                Output::Table if subject.is_some() => {
                    outln!("{name}: {} {}{}", s.what, e.value, e.source())
                }
                Output::Table => outln!("global: {} {}", s.what, e.value),
            }
            return Ok(());
        }
    };
    if c.output == Output::Json {
        return print_raw(&text);
    }
    let value = cell(&v);
    match delete {
        true => outln!("{name}: {} {value} removed", s.what),
        false => outln!("{name}: {} set to {value}", s.what),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_latest_or_java_ints() {
        assert_eq!(version_arg("latest").unwrap(), "latest");
        assert_eq!(version_arg("-1").unwrap(), "latest");
        assert_eq!(version_arg("7").unwrap(), "7");
        for bad in ["0", "-2", "x", "", "2147483648", "1.0"] {
            assert!(version_arg(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references_are_name_subject_version() {
        assert_eq!(
            reference("shop.Customer=customer-value:3").unwrap(),
            json!({"name": "shop.Customer", "subject": "customer-value", "version": 3})
        );
        assert_eq!(
            reference("c.avsc=a:b:latest").unwrap(),
            json!({"name": "c.avsc", "subject": "a:b", "version": -1})
        );
        for bad in ["x", "x=s", "=s:1", "x=:1", "x=s:0", "x=s:v"] {
            let Err(CliError::Usage(m)) = reference(bad) else {
                panic!("{bad:?} accepted");
            };
            assert!(m.starts_with("--reference"), "{m}");
        }
    }

    #[test]
    fn the_file_limit_is_the_largest_the_registry_may_be_set_to() {
        let mut section = busbar::schema_config::SchemaRegistrySection {
            schema_bytes_max: SCHEMA_FILE_BYTES_MAX,
            ..Default::default()
        };
        assert!(section.validate().is_ok());
        section.schema_bytes_max = SCHEMA_FILE_BYTES_MAX + 1;
        assert!(section.validate().is_err());
    }

    #[test]
    fn names_are_the_registrys() {
        assert_eq!(name_of(Level::BackwardTransitive), "BACKWARD_TRANSITIVE");
        assert_eq!(name_of(Mode::Readwrite), "READWRITE");
        assert_eq!(name_of(SchemaType::Protobuf), "PROTOBUF");
    }
}
