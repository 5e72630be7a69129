//! PROTOBUF compatibility: a port of Confluent's diff (`protobuf-provider` `diff/SchemaDiff`,
//! `MessageSchemaDiff`, `OneOfDiff`, `FieldSchemaDiff`). The diff walks from an original schema
//! to an updated one, messages by name and fields by tag, and the update is compatible when every
//! difference is one of the compatible kinds: MESSAGE_ADDED, MESSAGE_MOVED, ENUM_ADDED/REMOVED,
//! ENUM_CONST_ADDED/CHANGED/REMOVED, FIELD_ADDED, FIELD_REMOVED, FIELD_NAME_CHANGED,
//! FIELD_STRING_OR_BYTES_LABEL_CHANGED, ONEOF_ADDED/REMOVED, ONEOF_FIELD_ADDED and a oneof field
//! moved to the top level. Only the incompatible kinds are reported: PACKAGE_CHANGED,
//! MESSAGE_REMOVED, FIELD_KIND_CHANGED (scalar/message/map), FIELD_SCALAR_KIND_CHANGED (outside
//! the groups `{int32,int64,uint32,uint64,bool,enum}`, `{sint32,sint64}`, `{string,bytes}`,
//! `{fixed32,sfixed32}`, `{fixed64,sfixed64}`, `{float}`, `{double}`), FIELD_NAMED_TYPE_CHANGED,
//! FIELD_NUMERIC_LABEL_CHANGED, REQUIRED_FIELD_ADDED/REMOVED, ONEOF_FIELD_REMOVED,
//! MULTIPLE_FIELDS_MOVED_TO_ONEOF, FIELD_MOVED_TO_EXISTING_ONEOF.
//!
//! Labels follow Confluent's parsed form: a proto3 field without `optional`, and a oneof member,
//! has none, and a label change counts only between two present labels. Map entry messages are
//! not messages of their own (a map field compares its key and value types). Each pair of
//! messages is compared once, so recursive types terminate and the work is bounded by the
//! schemas' definitions.

use super::Protobuf;
use prost_reflect::{
    Cardinality, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, Syntax,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Whether a consumer using `reader` can read data written with `writer` (Confluent's
/// `reader.isBackwardCompatible(writer)`: the diff from `writer` to `reader`). `Err` lists the
/// incompatible differences, each as `TYPE at #/path: explanation`.
pub fn can_read(reader: &Protobuf, writer: &Protobuf) -> Result<(), Vec<String>> {
    let mut diff = Diff::default();
    diff.file(writer.file(), reader.file());
    if diff.out.is_empty() {
        Ok(())
    } else {
        Err(diff.out)
    }
}

/// A field's label as Confluent's parser sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Optional,
    Required,
    Repeated,
}

/// The scalar groups within which a type change keeps the wire format readable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Group {
    GeneralNumber,
    SignedNumber,
    StringOrBytes,
    Fixed32,
    Fixed64,
    Float,
    Double,
}

/// A field's type for the comparison.
enum Ty {
    Scalar(Group, String),
    Message(MessageDescriptor),
    Map(Box<Ty>, Box<Ty>),
}

impl Ty {
    fn of(f: &FieldDescriptor) -> Ty {
        if f.is_map() {
            if let Kind::Message(entry) = f.kind() {
                return Ty::Map(
                    Box::new(Ty::of(&entry.map_entry_key_field())),
                    Box::new(Ty::of(&entry.map_entry_value_field())),
                );
            }
        }
        let (group, name) = match f.kind() {
            Kind::Message(m) => return Ty::Message(m),
            Kind::Enum(e) => (Group::GeneralNumber, e.full_name().to_string()),
            Kind::Int32 => (Group::GeneralNumber, "int32".into()),
            Kind::Int64 => (Group::GeneralNumber, "int64".into()),
            Kind::Uint32 => (Group::GeneralNumber, "uint32".into()),
            Kind::Uint64 => (Group::GeneralNumber, "uint64".into()),
            Kind::Bool => (Group::GeneralNumber, "bool".into()),
            Kind::Sint32 => (Group::SignedNumber, "sint32".into()),
            Kind::Sint64 => (Group::SignedNumber, "sint64".into()),
            Kind::String => (Group::StringOrBytes, "string".into()),
            Kind::Bytes => (Group::StringOrBytes, "bytes".into()),
            Kind::Fixed32 => (Group::Fixed32, "fixed32".into()),
            Kind::Sfixed32 => (Group::Fixed32, "sfixed32".into()),
            Kind::Fixed64 => (Group::Fixed64, "fixed64".into()),
            Kind::Sfixed64 => (Group::Fixed64, "sfixed64".into()),
            Kind::Float => (Group::Float, "float".into()),
            Kind::Double => (Group::Double, "double".into()),
        };
        Ty::Scalar(group, name)
    }

    fn describe(&self) -> String {
        match self {
            Ty::Scalar(_, name) => name.clone(),
            Ty::Message(m) => m.full_name().to_string(),
            Ty::Map(k, v) => format!("map<{}, {}>", k.describe(), v.describe()),
        }
    }
}

fn label(f: &FieldDescriptor) -> Option<Label> {
    if f.containing_oneof().is_some_and(|o| !o.is_synthetic()) {
        return None;
    }
    match f.cardinality() {
        Cardinality::Required => Some(Label::Required),
        Cardinality::Repeated => Some(Label::Repeated),
        Cardinality::Optional => {
            let explicit = f.parent_file().syntax() == Syntax::Proto2
                || f.field_descriptor_proto().proto3_optional();
            explicit.then_some(Label::Optional)
        }
    }
}

/// The name of `m` within its package.
fn local_name(m: &MessageDescriptor) -> &str {
    let package = m.package_name();
    if package.is_empty() {
        return m.full_name();
    }
    m.full_name()
        .strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(m.full_name())
}

/// Fields outside any (non-synthetic) oneof, by tag.
fn top_fields(m: &MessageDescriptor) -> BTreeMap<u32, FieldDescriptor> {
    m.fields()
        .filter(|f| f.containing_oneof().is_none_or(|o| o.is_synthetic()))
        .map(|f| (f.number(), f))
        .collect()
}

/// The real oneofs of `m`, by name: their fields by tag.
fn oneofs(m: &MessageDescriptor) -> BTreeMap<String, BTreeMap<u32, FieldDescriptor>> {
    m.oneofs()
        .filter(|o| !o.is_synthetic())
        .map(|o| {
            let fields = o.fields().map(|f| (f.number(), f)).collect();
            (o.name().to_string(), fields)
        })
        .collect()
}

#[derive(Default)]
struct Diff {
    out: Vec<String>,
    said: HashSet<String>,
    seen: HashSet<(String, String)>,
}

impl Diff {
    fn add(&mut self, kind: &str, path: &str, why: String) {
        let message = format!("{kind} at {path}: {why}");
        if self.said.insert(message.clone()) {
            self.out.push(message);
        }
    }

    fn file(&mut self, original: &FileDescriptor, update: &FileDescriptor) {
        if original.package_name() != update.package_name() {
            self.add(
                "PACKAGE_CHANGED",
                "#/",
                format!(
                    "package {:?} became {:?}",
                    original.package_name(),
                    update.package_name()
                ),
            );
        }
        self.types("#", original.messages(), update.messages());
    }

    /// Messages matched by name (enum changes are all compatible).
    fn types(
        &mut self,
        path: &str,
        original: impl Iterator<Item = MessageDescriptor>,
        update: impl Iterator<Item = MessageDescriptor>,
    ) {
        let by_name = |it: &mut dyn Iterator<Item = MessageDescriptor>| -> BTreeMap<String, MessageDescriptor> {
            it.filter(|m| !m.is_map_entry())
                .map(|m| (m.name().to_string(), m))
                .collect()
        };
        let (mut original, mut update) = (original, update);
        let o = by_name(&mut original);
        let u = by_name(&mut update);
        for (name, om) in &o {
            let here = format!("{path}/{name}");
            match u.get(name) {
                None => self.add(
                    "MESSAGE_REMOVED",
                    &here,
                    format!("message {} was removed", om.full_name()),
                ),
                Some(um) => self.message(&here, om, um),
            }
        }
    }

    /// Compares two messages once: their fields and oneofs, then their nested messages.
    fn message(&mut self, path: &str, original: &MessageDescriptor, update: &MessageDescriptor) {
        let pair = (
            original.full_name().to_string(),
            update.full_name().to_string(),
        );
        if !self.seen.insert(pair) {
            return;
        }
        self.fields(path, original, update);
        self.types(path, original.child_messages(), update.child_messages());
    }

    fn fields(&mut self, path: &str, original: &MessageDescriptor, update: &MessageDescriptor) {
        let mut o_top = top_fields(original);
        let u_top = top_fields(update);
        let o_oneofs = oneofs(original);
        let u_oneofs = oneofs(update);
        let o_in_oneof: BTreeMap<u32, &str> = o_oneofs
            .iter()
            .flat_map(|(name, fs)| fs.keys().map(move |t| (*t, name.as_str())))
            .collect();
        let u_in_oneof: BTreeMap<u32, &str> = u_oneofs
            .iter()
            .flat_map(|(name, fs)| fs.keys().map(move |t| (*t, name.as_str())))
            .collect();
        for (name, fields) in &u_oneofs {
            let moved = fields.keys().filter(|t| o_top.remove(t).is_some()).count();
            let existing = fields.keys().filter(|t| o_in_oneof.contains_key(t)).count();
            let here = format!("{path}/{name}");
            if moved > 1 {
                self.add(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    &here,
                    format!("{moved} fields moved into oneof {name}"),
                );
            } else if moved == 1 && existing > 0 {
                self.add(
                    "FIELD_MOVED_TO_EXISTING_ONEOF",
                    &here,
                    format!(
                        "a field moved into oneof {name}, which holds fields of an earlier oneof"
                    ),
                );
            }
        }
        let u_all: BTreeSet<u32> = update.fields().map(|f| f.number()).collect();
        for (name, o_fields) in &o_oneofs {
            if let Some(u_fields) = u_oneofs.get(name) {
                self.oneof(&format!("{path}/{name}"), o_fields, u_fields, &u_all);
            }
        }
        self.top_level(path, &o_top, &u_top);
        self.relocated(path, original, update, &o_in_oneof, &u_in_oneof);
    }

    /// Top-level fields by tag (fields moved into a oneof already taken out of `o_top`).
    fn top_level(
        &mut self,
        path: &str,
        o_top: &BTreeMap<u32, FieldDescriptor>,
        u_top: &BTreeMap<u32, FieldDescriptor>,
    ) {
        for (tag, of) in o_top {
            let here = format!("{path}/{tag}");
            match u_top.get(tag) {
                None if of.cardinality() == Cardinality::Required => self.add(
                    "REQUIRED_FIELD_REMOVED",
                    &here,
                    format!("required field {} was removed", of.name()),
                ),
                None => {}
                Some(uf) => self.field(&here, of, uf),
            }
        }
        for (tag, uf) in u_top {
            if !o_top.contains_key(tag) && uf.cardinality() == Cardinality::Required {
                self.add(
                    "REQUIRED_FIELD_ADDED",
                    &format!("{path}/{tag}"),
                    format!("required field {} was added", uf.name()),
                );
            }
        }
    }

    /// Fields whose oneof membership changed, compared by tag across the message.
    fn relocated(
        &mut self,
        path: &str,
        original: &MessageDescriptor,
        update: &MessageDescriptor,
        o_in_oneof: &BTreeMap<u32, &str>,
        u_in_oneof: &BTreeMap<u32, &str>,
    ) {
        for of in original.fields() {
            let tag = of.number();
            let Some(uf) = update.get_field(tag) else {
                continue;
            };
            let (o, u) = (o_in_oneof.get(&tag), u_in_oneof.get(&tag));
            let same = match (o, u) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            };
            if !same {
                self.field(&format!("{path}/{tag}"), &of, &uf);
            }
        }
    }

    fn oneof(
        &mut self,
        path: &str,
        original: &BTreeMap<u32, FieldDescriptor>,
        update: &BTreeMap<u32, FieldDescriptor>,
        update_tags: &BTreeSet<u32>,
    ) {
        for (tag, of) in original {
            let here = format!("{path}/{tag}");
            match update.get(tag) {
                None if !update_tags.contains(tag) => self.add(
                    "ONEOF_FIELD_REMOVED",
                    &here,
                    format!("oneof field {} was removed", of.name()),
                ),
                None => {}
                Some(uf) => self.field(&here, of, uf),
            }
        }
    }

    fn field(&mut self, path: &str, original: &FieldDescriptor, update: &FieldDescriptor) {
        self.types_of(
            path,
            label(original),
            label(update),
            Ty::of(original),
            Ty::of(update),
        );
    }

    fn types_of(&mut self, path: &str, ol: Option<Label>, ul: Option<Label>, o: Ty, u: Ty) {
        match (o, u) {
            (Ty::Scalar(og, on), Ty::Scalar(ug, un)) => {
                if og != ug {
                    self.add(
                        "FIELD_SCALAR_KIND_CHANGED",
                        path,
                        format!("{on} became {un}, outside its group"),
                    );
                } else if let (Some(a), Some(b)) = (ol, ul) {
                    if a != b && og != Group::StringOrBytes {
                        self.add(
                            "FIELD_NUMERIC_LABEL_CHANGED",
                            path,
                            format!("the label of a {on} field changed from {a:?} to {b:?}"),
                        );
                    }
                }
            }
            (Ty::Message(om), Ty::Message(um)) => self.message_types(path, &om, &um),
            (Ty::Map(ok, ov), Ty::Map(uk, uv)) => {
                self.types_of(path, None, None, *ok, *uk);
                self.types_of(path, None, None, *ov, *uv);
            }
            (o, u) => self.add(
                "FIELD_KIND_CHANGED",
                path,
                format!("{} became {}", o.describe(), u.describe()),
            ),
        }
    }

    fn message_types(
        &mut self,
        path: &str,
        original: &MessageDescriptor,
        update: &MessageDescriptor,
    ) {
        let (ol, ul) = (local_name(original), local_name(update));
        if ol != ul {
            self.add(
                "FIELD_NAMED_TYPE_CHANGED",
                path,
                format!(
                    "message type {} became {}",
                    original.full_name(),
                    update.full_name()
                ),
            );
            return;
        }
        let before = self.out.len();
        self.message(&format!("#/{}", ol.replace('.', "/")), original, update);
        if self.out.len() > before {
            self.add(
                "FIELD_NAMED_TYPE_CHANGED",
                path,
                format!("message type {ol} changed incompatibly"),
            );
        }
    }
}
