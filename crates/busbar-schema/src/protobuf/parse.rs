//! From submitted text to descriptors: a schema is `.proto` text or a base64
//! `FileDescriptorProto` (what confluent-kafka-python's serializer sends); its references are
//! the files it imports, by import path; `google/protobuf/*.proto` well-known files resolve
//! without one. protox compiles the lot into a descriptor pool.
//!
//! Bounds, each a clear error before any large allocation: a base64 descriptor is scanned on the
//! wire before it is decoded (message nesting within `depth_max`, at most [`DEFINITIONS_MAX`]
//! definitions), `.proto` text is refused past `depth_max` levels of braces before protox parses
//! it (protox itself stops at 31 nested messages) and its parsed definitions are counted before
//! they are compiled.

use base64::Engine;
use prost_reflect::prost::Message;
use prost_reflect::prost_types::{DescriptorProto, FileDescriptorProto};
use protox::file::{File, FileResolver, GoogleFileResolver};
use std::collections::HashMap;

/// Most definitions (messages, fields, enums, enum values, oneofs) in one file of a schema.
/// Real schemas have hundreds; the bound keeps a hostile descriptor's decoded size and the
/// compatibility check's work small.
pub const DEFINITIONS_MAX: usize = 10_000;

/// The name the submitted schema's own file takes in the pool.
pub const ROOT_NAME: &str = "busbar/schema.proto";

/// Longest error message kept from protox.
const MESSAGE_MAX: usize = 300;

/// The files a schema may import: its references (import path → text) and the well-known ones.
pub struct Files {
    root: File,
    references: HashMap<String, String>,
    depth_max: usize,
    google: GoogleFileResolver,
}

impl Files {
    /// The resolver for schema `text` importing `references` (`(import path, text)`).
    pub fn new(
        text: &str,
        references: &[(String, String)],
        depth_max: usize,
    ) -> Result<Self, String> {
        let root = file(ROOT_NAME, text, depth_max)?;
        Ok(Self {
            root,
            references: references.iter().cloned().collect(),
            depth_max,
            google: GoogleFileResolver::new(),
        })
    }
}

impl FileResolver for Files {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == ROOT_NAME {
            return Ok(self.root.clone());
        }
        match self.references.get(name) {
            Some(text) => file(name, text, self.depth_max)
                .map_err(|e| protox::Error::new(Reference(format!("import {name:?}: {e}")))),
            None => self.google.open_file(name),
        }
    }
}

/// An error in a referenced file, carried through protox.
#[derive(Debug)]
struct Reference(String);

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reference {}

/// The base64 of a schema text that is only base64 (a FileDescriptorProto), line breaks
/// removed; `None` for `.proto` text.
pub fn base64_text(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let base64 = !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'));
    base64.then(|| trimmed.chars().filter(|c| !c.is_whitespace()).collect())
}

/// `text` as file `name`: a base64 descriptor when it is only base64, else `.proto` text.
pub fn file(name: &str, text: &str, depth_max: usize) -> Result<File, String> {
    if let Some(compact) = base64_text(text) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| {
                format!("the schema is neither .proto text nor a base64 FileDescriptorProto: {e}")
            })?;
        return descriptor_file(name, &bytes, depth_max);
    }
    check_braces(text, depth_max)?;
    let parsed = File::from_source(name, text).map_err(|e| shorten(&describe(&e, text)))?;
    let count = count_file(parsed.file_descriptor_proto());
    if count > DEFINITIONS_MAX {
        return Err(too_many(count));
    }
    Ok(parsed)
}

fn too_many(count: usize) -> String {
    format!(
        "the schema has more than {DEFINITIONS_MAX} definitions (messages, fields, enums, enum values, oneofs): {count}"
    )
}

/// A decoded `FileDescriptorProto`, scanned first, renamed to `name`.
fn descriptor_file(name: &str, bytes: &[u8], depth_max: usize) -> Result<File, String> {
    let mut budget = DEFINITIONS_MAX;
    scan(bytes, Scope::File, 0, depth_max, &mut budget)
        .map_err(|e| format!("invalid FileDescriptorProto: {e}"))?;
    let mut proto = FileDescriptorProto::decode(bytes)
        .map_err(|e| shorten(&format!("invalid FileDescriptorProto: {e}")))?;
    proto.name = Some(name.to_string());
    proto.source_code_info = None;
    Ok(File::from_file_descriptor_proto(proto))
}

/// What a length-delimited field of a descriptor holds, for [`scan`].
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    File,
    Message,
    Enum,
    Leaf,
}

/// The scope of field `number` inside `scope`, and whether it is a definition.
fn child(scope: Scope, number: u64) -> (Scope, bool) {
    match (scope, number) {
        (Scope::File, 4) | (Scope::Message, 3) => (Scope::Message, true),
        (Scope::File, 5) | (Scope::Message, 4) => (Scope::Enum, true),
        (Scope::Message, 2 | 6 | 8) | (Scope::File, 7) | (Scope::Enum, 2) => (Scope::Leaf, true),
        _ => (Scope::Leaf, false),
    }
}

/// Walks descriptor bytes on the wire without decoding them: refuses malformed framing, message
/// nesting deeper than `depth_max` and more definitions than the budget.
fn scan(
    bytes: &[u8],
    scope: Scope,
    depth: usize,
    depth_max: usize,
    budget: &mut usize,
) -> Result<(), String> {
    if depth > depth_max {
        return Err(format!(
            "messages nested more than {depth_max} deep (schema_registry.depth_max)"
        ));
    }
    let mut at = 0;
    while at < bytes.len() {
        let (key, next) = varint(bytes, at)?;
        at = next;
        let number = key >> 3;
        match key & 7 {
            0 => at = varint(bytes, at)?.1,
            1 => at = skip(bytes, at, 8)?,
            5 => at = skip(bytes, at, 4)?,
            2 => {
                let (len, start) = varint(bytes, at)?;
                let len = usize::try_from(len).map_err(|_| "length out of range".to_string())?;
                let end = skip(bytes, start, len)?;
                if scope != Scope::Leaf {
                    let (inner, definition) = child(scope, number);
                    if definition {
                        *budget = budget
                            .checked_sub(1)
                            .ok_or_else(|| too_many(DEFINITIONS_MAX + 1))?;
                    }
                    if inner != Scope::Leaf {
                        let deeper = depth + usize::from(inner == Scope::Message);
                        scan(&bytes[start..end], inner, deeper, depth_max, budget)?;
                    }
                }
                at = end;
            }
            other => {
                return Err(format!(
                    "wire type {other} at byte {at} is not allowed in a descriptor"
                ))
            }
        }
    }
    Ok(())
}

fn varint(bytes: &[u8], at: usize) -> Result<(u64, usize), String> {
    let mut value = 0u64;
    for (n, byte) in bytes.iter().skip(at).take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            return Ok((value, at + n + 1));
        }
    }
    Err(format!("truncated or over-long varint at byte {at}"))
}

fn skip(bytes: &[u8], at: usize, len: usize) -> Result<usize, String> {
    at.checked_add(len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| format!("field at byte {at} runs past the end"))
}

/// Refuses `.proto` text whose braces (outside strings and comments) nest deeper than `max`.
fn check_braces(text: &str, max: usize) -> Result<(), String> {
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c || d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for d in chars.by_ref() {
                    if star && d == '/' {
                        break;
                    }
                    star = d == '*';
                }
            }
            '{' | '[' | '(' | '<' => {
                depth += 1;
                if depth > max {
                    return Err(format!(
                        "the schema is nested more than {max} deep (schema_registry.depth_max)"
                    ));
                }
            }
            '}' | ']' | ')' | '>' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The definitions of a parsed file.
fn count_file(file: &FileDescriptorProto) -> usize {
    let enums: usize = file.enum_type.iter().map(|e| 1 + e.value.len()).sum();
    file.message_type.iter().map(count_message).sum::<usize>() + enums + file.extension.len()
}

fn count_message(m: &DescriptorProto) -> usize {
    let enums: usize = m.enum_type.iter().map(|e| 1 + e.value.len()).sum();
    1 + m.field.len()
        + m.extension.len()
        + m.oneof_decl.len()
        + enums
        + m.nested_type.iter().map(count_message).sum::<usize>()
}

/// protox's message, with the line and column of its first label when it has one.
pub fn describe(e: &protox::Error, text: &str) -> String {
    use miette::Diagnostic;
    let at = e
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
        .filter(|o| *o <= text.len() && text.is_char_boundary(*o))
        .map(|o| {
            let before = &text[..o];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
            format!(" (line {line}, column {column})")
        });
    format!("{e}{}", at.unwrap_or_default())
}

/// At most [`MESSAGE_MAX`] bytes of `message`.
pub fn shorten(message: &str) -> String {
    if message.len() <= MESSAGE_MAX {
        return message.to_string();
    }
    let mut end = MESSAGE_MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}
