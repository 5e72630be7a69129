//! PROTOBUF schemas: parsing (`.proto` text or a base64 `FileDescriptorProto`, with the files
//! its references supply; see `parse`), Confluent's compatibility rules (`compat`), and what the
//! enforcement and HTTP encoding paths need: the message indexes of the wire format (`wire`),
//! the message they name, and payloads to and from the proto3 JSON mapping (prost-reflect's
//! `DynamicMessage`).
//!
//! The stored schema is the submitted text: protox cannot print a descriptor back as `.proto`.

mod compat;
mod identity;
mod parse;
mod wire;

pub use compat::can_read;
pub use identity::identity_text;
pub use parse::{DEFINITIONS_MAX, ROOT_NAME};
pub use wire::{encode_indexes, message_indexes, INDEXES_MAX};

use prost_reflect::{DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor};
use protox::Compiler;
use serde_json::Value;

/// A compiled PROTOBUF schema: its own file and the pool holding it and its imports.
#[derive(Debug, Clone)]
pub struct Protobuf {
    pool: DescriptorPool,
    file: FileDescriptor,
}

impl Protobuf {
    /// Compiles schema `text` importing `references` (`(import path, text)` pairs, the
    /// resolved references in any order). Errors are protox's messages, shortened.
    pub fn parse(
        text: &str,
        references: &[(String, String)],
        depth_max: usize,
    ) -> Result<Self, String> {
        let files = parse::Files::new(text, references, depth_max)?;
        let mut compiler = Compiler::with_file_resolver(files);
        compiler
            .open_file(ROOT_NAME)
            .map_err(|e| parse::shorten(&parse::describe(&e, text)))?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(ROOT_NAME)
            .ok_or_else(|| "the schema's file is missing after compiling".to_string())?;
        Ok(Self { pool, file })
    }

    /// The schema's own file.
    pub fn file(&self) -> &FileDescriptor {
        &self.file
    }

    /// The pool: the schema's file and every file it imports.
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The schema's own file as a base64 `FileDescriptorProto` (what `?format=serialized` answers
    /// and confluent-kafka-python's deserializer parses), whatever form it was submitted in. Its
    /// `dependency` list names the imports, as the references do.
    pub fn serialized(&self) -> String {
        use base64::Engine;
        let bytes = prost_reflect::prost::Message::encode_to_vec(self.file.file_descriptor_proto());
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The message that `indexes` name: the first index among the file's top-level messages,
    /// each next one among the previous message's nested messages (declaration order).
    pub fn message_by_indexes(&self, indexes: &[i32]) -> Option<MessageDescriptor> {
        let (first, rest) = indexes.split_first()?;
        let mut message = self.file.messages().nth(usize::try_from(*first).ok()?)?;
        for i in rest {
            let next = message.child_messages().nth(usize::try_from(*i).ok()?)?;
            message = next;
        }
        Some(message)
    }

    /// The full name of the message `indexes` name (RecordNameStrategy's subject).
    pub fn record_name(&self, indexes: &[i32]) -> Option<String> {
        self.message_by_indexes(indexes)
            .map(|m| m.full_name().to_string())
    }

    /// The indexes of the message named `full_name` (a message of this schema's own file).
    pub fn indexes_of(&self, full_name: &str) -> Option<Vec<i32>> {
        let message = self.pool.get_message_by_name(full_name)?;
        if message.parent_file() != self.file {
            return None;
        }
        let mut path = Vec::new();
        let mut current = message;
        loop {
            let parent = current.parent_message();
            let position = match &parent {
                Some(p) => p.child_messages().position(|m| m == current),
                None => self.file.messages().position(|m| m == current),
            }?;
            path.push(i32::try_from(position).ok()?);
            match parent {
                Some(p) => current = p,
                None => break,
            }
        }
        path.reverse();
        Some(path)
    }

    /// Decodes message `bytes` (after the indexes) as the message `indexes` name, into its
    /// proto3 JSON mapping.
    pub fn decode_json(&self, indexes: &[i32], bytes: &[u8]) -> Result<Value, String> {
        let desc = self
            .message_by_indexes(indexes)
            .ok_or_else(|| format!("message indexes {indexes:?} name no message of the schema"))?;
        let message = DynamicMessage::decode(desc.clone(), bytes)
            .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))?;
        serde_json::to_value(&message).map_err(|e| format!("{} as JSON: {e}", desc.full_name()))
    }

    /// Encodes `value` (proto3 JSON mapping) as the message `message` names, a full name or
    /// indexes (`Target::Indexes(&[0])`: the first message). Answers the wire's message indexes
    /// then the message.
    pub fn encode_json(&self, message: Target<'_>, value: &Value) -> Result<Vec<u8>, String> {
        let indexes = match message {
            Target::Indexes(i) => i.to_vec(),
            Target::Name(name) => self
                .indexes_of(name)
                .ok_or_else(|| format!("the schema has no message {:?}", crate::shown(name)))?,
        };
        let desc = self
            .message_by_indexes(&indexes)
            .ok_or_else(|| format!("message indexes {indexes:?} name no message of the schema"))?;
        let message = DynamicMessage::deserialize(desc.clone(), value)
            .map_err(|e| format!("not a valid {} message: {e}", desc.full_name()))?;
        let mut out = encode_indexes(&indexes);
        out.extend(prost_reflect::prost::Message::encode_to_vec(&message));
        Ok(out)
    }
}

/// The message [`Protobuf::encode_json`] encodes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A full name, `package.Message.Nested`.
    Name(&'a str),
    /// Message indexes, as the wire carries them.
    Indexes(&'a [i32]),
}

#[cfg(test)]
mod tests;
