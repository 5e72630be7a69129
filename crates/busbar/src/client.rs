//! The command-line client's HTTP calls and output. Exit codes scripts can rely on:
//! 0 success, 1 the server refused the request (its error code and message on stderr) or has no
//! such thing, 2 bad usage or input, 3 the server could not be reached or does not answer as busbar
//! does (a 2xx answer must be a JSON object with the fields the command reads), 128 + the signal's
//! number when a command
//! that cleans up on the server first (`consume --group`) was stopped by SIGHUP, SIGINT or SIGTERM.
//! Output goes through [`outln!`]: a reader that closed the pipe (`busbar consume t | head -2`)
//! ends the command quietly with status 0.

use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// A failed command, with its exit code.
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Server {
        status: u16,
        code: String,
        message: String,
    },
    Connect(String),
    /// The server has no such thing (found by the client, not answered as an HTTP error).
    Refused(String),
    /// A 2xx answer not shaped as busbar's (another server at --server): exit 3.
    NotBusbar(String),
    /// Stopped by a signal after cleaning up (`signal` is its number; the message says what was done).
    Stopped {
        signal: i32,
        message: String,
    },
    /// The reader closed standard output (EPIPE): it has what it wanted. Exit 0, nothing printed.
    Closed,
    /// Standard output failed otherwise (a full disk): exit 2, as for bad input.
    Output(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Server { .. } | CliError::Refused(_) => 1,
            CliError::Usage(_) | CliError::Output(_) => 2,
            CliError::Connect(_) | CliError::NotBusbar(_) => 3,
            CliError::Stopped { signal, .. } => 128 + signal,
            CliError::Closed => 0,
        }
    }

    /// Says why on stderr (nothing for a closed output).
    pub fn say(&self) {
        if !matches!(self, CliError::Closed) {
            eprintln!("busbar: {self}");
        }
    }

    /// Says why and answers the exit code.
    pub fn report(&self) -> ExitCode {
        self.say();
        ExitCode::from(self.exit_code() as u8)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Server {
                status,
                code,
                message,
            } => write!(f, "{message} ({code}, HTTP {status})"),
            CliError::Connect(m) | CliError::Refused(m) | CliError::Stopped { message: m, .. } => {
                write!(f, "{m}")
            }
            CliError::NotBusbar(m) => write!(f, "{m}: not a busbar server (check --server)"),
            CliError::Closed => write!(f, "standard output was closed"),
            CliError::Output(m) => write!(f, "writing standard output failed: {m}"),
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// Writes one line to standard output; a closed pipe is [`CliError::Closed`].
pub fn write_line(args: fmt::Arguments<'_>) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|_| out.write_all(b"\n")) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CliError::Closed),
        Err(e) => Err(CliError::Output(e.to_string())),
    }
}

/// Writes one JSON document exactly as the server sent it, on one line: a line break in it is JSON
/// whitespace (a JSON string cannot hold a raw one), so it becomes a space and no value changes.
pub fn write_raw(raw: &RawValue) -> CliResult<()> {
    let text = raw.get();
    if text.contains(['\n', '\r']) {
        write_line(format_args!("{}", text.replace(['\n', '\r'], " ")))
    } else {
        write_line(format_args!("{text}"))
    }
}

/// [`write_line`] for output with nothing to clean up after it: a failed write ends the process
/// with its exit code (0, quietly, when the reader closed the pipe).
pub fn line(args: fmt::Arguments<'_>) {
    if let Err(e) = write_line(args) {
        e.say();
        std::process::exit(e.exit_code());
    }
}

/// `println!` for client output: see [`line`].
macro_rules! outln {
    () => {
        $crate::client::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::client::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Output style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The certificates of a PEM file (`--ca-file`); a usage error naming the file when it cannot be
/// read or holds none.
fn ca_certs(path: &Path) -> CliResult<Vec<ureq::tls::Certificate<'static>>> {
    let bad = |why: String| CliError::Usage(format!("--ca-file {}: {why}", path.display()));
    let text = std::fs::read(path).map_err(|e| bad(format!("cannot read ({e})")))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&text)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("bad PEM ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Talks to one busbar server.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    pub output: Output,
    /// `Basic ...` or `Bearer ...` when --user/--password or --token were given.
    authorization: Option<String>,
}

impl Client {
    /// A client of `server` (`http://` or `https://`); an `https://` server's certificate must
    /// chain to `ca_file` (PEM, `--ca-file`) when given, else to the Mozilla roots.
    pub fn new(server: &str, output: Output, ca_file: Option<&Path>) -> CliResult<Self> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "--server {server:?} must be an http:// or https:// URL"
            )));
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = ca_file {
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(ca_certs(path)?)));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Self {
            base,
            agent,
            output,
            authorization: None,
        })
    }

    /// Sends HTTP Basic credentials (`--user`, `--password`) or a Bearer token (`--token`) with
    /// every request.
    pub fn with_credentials(
        mut self,
        user: Option<&str>,
        password: Option<&str>,
        token: Option<&str>,
    ) -> CliResult<Self> {
        use base64::Engine;
        if let Some(t) = token {
            if user.is_some() {
                return Err(CliError::Usage("give --token or --user, not both".into()));
            }
            self.authorization = Some(format!("Bearer {t}"));
            return Ok(self);
        }
        match (user, password) {
            (None, None) => {}
            (Some(u), Some(p)) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                self.authorization = Some(format!("Basic {token}"));
            }
            (Some(_), None) => {
                return Err(CliError::Usage(
                    "--user needs --password (or BUSBAR_PASSWORD)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(CliError::Usage(
                    "--password needs --user (or BUSBAR_USER)".into(),
                ))
            }
        }
        Ok(self)
    }

    fn authorized<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    /// Sends a request; a JSON answer on success, the server's error otherwise.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> CliResult<Value> {
        self.call_text(method, path, body).map(|(v, _)| v)
    }

    /// [`Client::call`] with the answer's text as the server sent it, for output that must
    /// show values verbatim (a parsed [`Value`] turns `1e3` into `1000.0`).
    pub fn call_text(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> CliResult<(Value, String)> {
        let (status, v, text) = self.send(method, path, body)?;
        if (200..300).contains(&status) {
            return match v {
                Value::Object(_) => Ok((v, text)),
                Value::Null if status == 204 => Ok((v, text)),
                _ => Err(self.not_busbar(method, path, &format!("HTTP {status} with {v}"))),
            };
        }
        Err(refusal(status, &v))
    }

    /// [`Client::call_text`] for an API whose answers may be any JSON value (the schema
    /// registry answers lists and numbers too); a 2xx answer that is not JSON is not busbar's.
    pub fn call_any(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> CliResult<(Value, String)> {
        let (status, v, text) = self.send(method, path, body)?;
        if !(200..300).contains(&status) {
            return Err(refusal(status, &v));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(_) => Ok((v, text)),
            Err(_) => Err(self.not_busbar(method, path, &format!("HTTP {status} with {v}"))),
        }
    }

    /// Sends a request: the answer's status, its JSON (a string when it is not JSON, null when
    /// empty) and its text.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> CliResult<(u16, Value, String)> {
        let url = format!("{}{path}", self.base);
        let res = match (method, body) {
            ("GET", _) => self.authorized(self.agent.get(&url)).call(),
            ("DELETE", Some((ct, b))) => self
                .authorized(self.agent.delete(&url))
                .header("content-type", ct)
                .force_send_body()
                .send(&b[..]),
            ("DELETE", None) => self.authorized(self.agent.delete(&url)).call(),
            ("POST", Some((ct, b))) => self
                .authorized(self.agent.post(&url))
                .header("content-type", ct)
                .send(&b[..]),
            ("PUT", Some((ct, b))) => self
                .authorized(self.agent.put(&url))
                .header("content-type", ct)
                .send(&b[..]),
            ("PATCH", Some((ct, b))) => self
                .authorized(self.agent.patch(&url))
                .header("content-type", ct)
                .send(&b[..]),
            (m, _) => return Err(CliError::Usage(format!("unsupported method {m}"))),
        };
        let mut res = res
            .map_err(|e| CliError::Connect(format!("cannot reach busbar at {}: {e}", self.base)))?;
        let status = res.status().as_u16();
        let mut text = String::new();
        res.body_mut()
            .as_reader()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Connect(format!("reading the answer failed: {e}")))?;
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Ok((status, v, text))
    }

    /// [`CliError::NotBusbar`] for an answer to `method path` described by `what`.
    pub fn not_busbar(&self, method: &str, path: &str, what: &str) -> CliError {
        let mut what = what.to_string();
        if what.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|i| what.is_char_boundary(*i))
                .unwrap_or(0);
            what.truncate(cut);
            what.push('…');
        }
        CliError::NotBusbar(format!(
            "{} answered {method} {path} with {what}",
            self.base
        ))
    }

    /// `v` when it has every field in `fields` (busbar's answers always do), else
    /// [`CliError::NotBusbar`].
    pub fn expect(&self, v: Value, path: &str, fields: &[&str]) -> CliResult<Value> {
        match fields.iter().find(|f| v.get(**f).is_none()) {
            None => Ok(v),
            Some(f) => Err(self.not_busbar("GET", path, &format!("no field `{f}`"))),
        }
    }

    /// A GET whose answer must have `fields`.
    pub fn get(&self, path: &str, fields: &[&str]) -> CliResult<Value> {
        let v = self.call("GET", path, None)?;
        self.expect(v, path, fields)
    }

    /// [`Client::get`] with the answer's text as sent.
    pub fn get_text(&self, path: &str, fields: &[&str]) -> CliResult<(Value, String)> {
        let (v, text) = self.call_text("GET", path, None)?;
        Ok((self.expect(v, path, fields)?, text))
    }

    /// The raw text of each item of the answer's array field `field` (`text` answered `path`),
    /// exactly as the server wrote it.
    pub fn raw_items<'t>(
        &self,
        path: &str,
        text: &'t str,
        field: &str,
    ) -> CliResult<Vec<&'t RawValue>> {
        let not_list = || self.not_busbar("GET", path, &format!("`{field}` that is not a list"));
        let fields: HashMap<String, &RawValue> =
            serde_json::from_str(text).map_err(|_| not_list())?;
        let items = fields.get(field).map_or("null", |v| v.get());
        serde_json::from_str(items).map_err(|_| not_list())
    }

    pub fn json(&self, method: &str, path: &str, body: &Value) -> CliResult<Value> {
        self.call(
            method,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
    }
}

/// The server's refusal `v` (answered with `status`): busbar's `{"error": {"code", "message"}}`,
/// or the schema registry's `{"error_code": N, "message"}` (Confluent's), whose code is the number.
fn refusal(status: u16, v: &Value) -> CliError {
    let (code, message) = match v.get("error_code") {
        Some(code) if v["error"].is_null() => (code.to_string(), &v["message"]),
        _ => (
            v["error"]["code"].as_str().unwrap_or("error").to_string(),
            &v["error"]["message"],
        ),
    };
    CliError::Server {
        status,
        code,
        message: message
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string()),
    }
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints rows as aligned columns under a header.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        outln!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r);
    }
}

/// Prints `v` as JSON, or its array field `field` as a table with `(header, key)` columns (a key
/// `a.b` is field `b` of field `a`); an answer without that array is not busbar's.
pub fn print_list(c: &Client, v: &Value, field: &str, columns: &[(&str, &str)]) -> CliResult<()> {
    let Some(items) = v[field].as_array() else {
        return Err(CliError::NotBusbar(format!(
            "{} answered without a `{field}` list",
            c.base
        )));
    };
    if c.output == Output::Json {
        outln!("{v}");
        return Ok(());
    }
    let rows = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, key)| cell(key.split('.').fold(item, |v, k| &v[k])))
                .collect()
        })
        .collect();
    table(&columns.iter().map(|(h, _)| *h).collect::<Vec<_>>(), rows);
    Ok(())
}

/// A JSON value as a table cell.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
