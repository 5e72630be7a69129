//! busbar's server log: one line on stderr per significant event (start, recovery, shutdown,
//! warnings, refused requests, subscription state changes, failing targets), never one per
//! event delivered or produced.
//!
//! Two formats, chosen once at start (`log.format`, [`set_format`]):
//! - `text` (the default): the lines busbar always printed, `<source>: <message>` with
//!   `warning: ` before a warning's message (tests and scripts read them, e.g. the ready line);
//! - `json`: one JSON object per line, `{"ts": RFC 3339 with ms, "level": "info"|"warn"|"error",
//!   "source": "busbar"|"busbar-http"|..., "event": a stable name, "msg": the text line's
//!   message, ...the event's fields}`; for log shippers (Loki, Elasticsearch, CloudWatch).
//!
//! Each call writes its line whole (one `write` of the formatted line on a locked stderr), so
//! lines from many tasks never interleave.

use serde_json::{Map, Value};
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl Format {
    /// `text` or `json`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// How much a line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    /// Text lines say `warning: ` before the message.
    Warn,
    /// Something failed and is tried again (text lines as they always were, no prefix).
    Error,
}

static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the format of every line written from now on (once, at start).
pub fn set_format(f: Format) {
    FORMAT.store(f as u8, Ordering::Relaxed);
}

/// The format in force.
pub fn format() -> Format {
    match FORMAT.load(Ordering::Relaxed) {
        1 => Format::Json,
        _ => Format::Text,
    }
}

/// Writes an info line: `source` (`busbar`, `busbar-http`, ...), a stable `event` name, the
/// message, and fields the JSON format adds.
pub fn info(source: &str, event: &str, msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Info, source, event, msg, fields);
}

/// Writes a warning line (see [`info`]).
pub fn warn(source: &str, event: &str, msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Warn, source, event, msg, fields);
}

/// Writes an error line (see [`info`]).
pub fn error(source: &str, event: &str, msg: &str, fields: &[(&str, Value)]) {
    emit(Level::Error, source, event, msg, fields);
}

/// Writes one line in the format in force.
pub fn emit(level: Level, source: &str, event: &str, msg: &str, fields: &[(&str, Value)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut line = render(format(), now, level, source, event, msg, fields);
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// One line, without its newline (what [`emit`] writes at `now_ms`).
pub fn render(
    format: Format,
    now_ms: i64,
    level: Level,
    source: &str,
    event: &str,
    msg: &str,
    fields: &[(&str, Value)],
) -> String {
    let warning = if level == Level::Warn {
        "warning: "
    } else {
        ""
    };
    match format {
        Format::Text => format!("{source}: {warning}{msg}"),
        Format::Json => {
            let mut m = Map::new();
            let level = match level {
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            m.insert("ts".into(), crate::time::format_rfc3339(now_ms).into());
            m.insert("level".into(), level.into());
            m.insert("source".into(), source.into());
            m.insert("event".into(), event.into());
            m.insert("msg".into(), msg.into());
            for (k, v) in fields {
                // The fixed keys stay what they are: a field cannot pass for them.
                m.entry(k.to_string()).or_insert_with(|| v.clone());
            }
            Value::Object(m).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_the_old_line_and_json_is_one_object_with_the_fields() {
        let f = [("subscription", json!("s")), ("level", json!("x"))];
        let text = render(
            Format::Text,
            0,
            Level::Warn,
            "busbar",
            "e",
            "target down",
            &f,
        );
        assert_eq!(text, "busbar: warning: target down");
        let text = render(Format::Text, 0, Level::Info, "busbar-http", "e", "m", &[]);
        assert_eq!(text, "busbar-http: m");
        let text = render(Format::Text, 0, Level::Error, "busbar-http", "e", "m", &[]);
        assert_eq!(text, "busbar-http: m");
        let line = render(
            Format::Json,
            0,
            Level::Warn,
            "busbar",
            "sub_state",
            "a\nb",
            &f,
        );
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({"ts": "1970-01-01T00:00:00.000Z", "level": "warn", "source": "busbar",
                "event": "sub_state", "msg": "a\nb", "subscription": "s"})
        );
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("JSON"), None);
    }
}
