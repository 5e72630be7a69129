//! Encoding natural JSON (the mapping in the parent module's docs) to Avro binary: the inverse of
//! `decode`, for HTTP publish that stores JSON events in a subject's Avro format.
//!
//! A union's branch is chosen by the value: null → the `null` branch; otherwise the first branch
//! the value fits, judged by its shape two levels deep (no trial encodings, so nested unions cost
//! no backtracking): a number goes first to a branch that decodes back to the same JSON number
//! (an integer to int or long, 0.5 to float, 0.123456789 past a float to double), else to the
//! first number branch; a record fits an object whose keys are all its fields and that has every
//! field without a default. Avro's JSON encoding of a union, `{"type-name": value}`, is accepted when
//! the key names a branch the inner value fits and no branch takes the object as it is.
//! A missing record field takes its default (a union default is its first branch's, as the spec
//! says); a key that is not a field is refused, so a misspelt field is not silently dropped.
//! Bounded by [`CodecLimits`] like decoding; nothing here panics on any input.

use super::{double_json, float_json, too_deep, CodecLimits, Failure, Res, Step};
use crate::avro::{Avro, Def, Named, Type};
use serde_json::Value;

/// Encodes `value` (natural JSON) as the Avro binary encoding of `avro`'s root type.
pub fn encode(avro: &Avro, value: &Value, limits: &CodecLimits) -> Result<Vec<u8>, String> {
    let root = avro.root.as_ref().ok_or("the schema has no root type")?;
    let mut writer = Writer {
        avro,
        out: Vec::new(),
        items: 0,
        limits,
    };
    writer
        .value(root, value, 0, Mode::Natural)
        .map_err(Failure::render)?;
    Ok(writer.out)
}

/// How a union's branch is chosen.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// By the value (natural JSON, or Avro's `{"type-name": value}`).
    Natural,
    /// A field default: always the first branch, as the spec defines defaults.
    Default,
}

struct Writer<'a> {
    avro: &'a Avro,
    out: Vec<u8>,
    /// Array items and map entries written so far.
    items: usize,
    limits: &'a CodecLimits,
}

impl<'a> Writer<'a> {
    fn value(&mut self, ty: &'a Type, v: &Value, depth: usize, mode: Mode) -> Res<()> {
        if depth > self.limits.depth_max && !super::is_scalar(ty) {
            return Err(too_deep(self.limits));
        }
        match ty {
            Type::Null if v.is_null() => Ok(()),
            Type::Boolean => {
                let b = v.as_bool().ok_or_else(|| expected("a boolean", v))?;
                self.out.push(u8::from(b));
                Ok(())
            }
            Type::Int => {
                let n = (v.as_i64().and_then(|n| i32::try_from(n).ok()))
                    .ok_or_else(|| expected("an int (32-bit integer)", v))?;
                self.long(n.into());
                Ok(())
            }
            Type::Long => {
                let n = v
                    .as_i64()
                    .ok_or_else(|| expected("a long (64-bit integer)", v))?;
                self.long(n);
                Ok(())
            }
            Type::Float => {
                let f = number(v).ok_or_else(|| expected("a float", v))?;
                let f32v = f as f32;
                if f.is_finite() && !f32v.is_finite() {
                    return Err(Failure::new(format!("{f} is out of a float's range")));
                }
                self.out.extend_from_slice(&f32v.to_le_bytes());
                Ok(())
            }
            Type::Double => {
                let f = number(v).ok_or_else(|| expected("a double", v))?;
                self.out.extend_from_slice(&f.to_le_bytes());
                Ok(())
            }
            Type::Bytes(_) => {
                let raw = latin1(v).ok_or_else(|| expected(BYTES, v))?;
                self.long(raw.len() as i64);
                self.out.extend_from_slice(&raw);
                Ok(())
            }
            Type::String => {
                let s = v.as_str().ok_or_else(|| expected("a string", v))?;
                self.long(s.len() as i64);
                self.out.extend_from_slice(s.as_bytes());
                Ok(())
            }
            Type::Array(items) => self.array(items, v, depth, mode),
            Type::Map(values) => self.map(values, v, depth, mode),
            Type::Union(branches) => self.union(branches, v, depth, mode),
            Type::Named(name) => self.named(name, v, depth, mode),
            Type::Null => Err(expected("null", v)),
        }
    }

    fn array(&mut self, items: &'a Type, v: &Value, depth: usize, mode: Mode) -> Res<()> {
        let list = v.as_array().ok_or_else(|| expected("an array", v))?;
        self.count(list.len())?;
        if !list.is_empty() {
            self.long(list.len() as i64);
            for (i, item) in list.iter().enumerate() {
                (self.value(items, item, depth + 1, mode))
                    .map_err(|e| e.at(Step::Index(i as u64)))?;
            }
        }
        self.out.push(0);
        Ok(())
    }

    fn map(&mut self, values: &'a Type, v: &Value, depth: usize, mode: Mode) -> Res<()> {
        let obj = v
            .as_object()
            .ok_or_else(|| expected("an object (a map)", v))?;
        self.count(obj.len())?;
        if !obj.is_empty() {
            self.long(obj.len() as i64);
            for (key, item) in obj {
                self.long(key.len() as i64);
                self.out.extend_from_slice(key.as_bytes());
                (self.value(values, item, depth + 1, mode))
                    .map_err(|e| e.at(Step::Key(key.clone())))?;
            }
        }
        self.out.push(0);
        Ok(())
    }

    /// Counts `n` more array items or map entries against the limit.
    fn count(&mut self, n: usize) -> Res<()> {
        self.items = self.items.saturating_add(n);
        if self.items > self.limits.items_max {
            return Err(Failure::new(format!(
                "more than {} array items and map entries in the value (schema_registry.codec_items_max)",
                self.limits.items_max
            )));
        }
        Ok(())
    }

    fn union(&mut self, branches: &'a [Type], v: &Value, depth: usize, mode: Mode) -> Res<()> {
        let (index, inner) = match mode {
            Mode::Default => (0, v),
            Mode::Natural => self.branch(branches, v)?,
        };
        let ty = branches
            .get(index)
            .ok_or_else(|| Failure::new("an empty union holds no value"))?;
        self.long(index as i64);
        self.value(ty, inner, depth + 1, mode)
    }

    /// The branch `v` is written with, and the value to write with it.
    fn branch<'v>(&self, branches: &'a [Type], v: &'v Value) -> Res<(usize, &'v Value)> {
        if let Some(i) = first_fit(self.avro, branches, v) {
            return Ok((i, v));
        }
        // Avro's JSON encoding: {"type-name": value}.
        if let Some((key, inner)) = v
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        {
            let named = branches.iter().position(|b| names_branch(b, key));
            let fit = |i: &usize| fits(self.avro, &branches[*i], inner, false, LOOK);
            if let Some(i) = named.filter(fit) {
                return Ok((i, inner));
            }
        }
        let names: Vec<String> = branches.iter().map(super::super::type_name).collect();
        Err(Failure::new(format!(
            "{} fits no branch of the union [{}]",
            shown_value(v),
            names.join(", ")
        )))
    }

    fn named(&mut self, name: &'a str, v: &Value, depth: usize, mode: Mode) -> Res<()> {
        let def = definition(self.avro, name)?;
        match &def.kind {
            Named::Record { fields } => {
                let obj = (v.as_object())
                    .ok_or_else(|| expected(&format!("an object (record {name})"), v))?;
                if let Some(k) = obj.keys().find(|k| !fields.iter().any(|f| &f.name == *k)) {
                    return Err(Failure::new(format!(
                        "record {name} has no field \"{}\"",
                        crate::shown(k)
                    )));
                }
                for f in fields {
                    let (value, mode) = match (obj.get(&f.name), &f.default) {
                        (Some(x), _) => (x, mode),
                        (None, Some(d)) => (d, Mode::Default),
                        (None, None) => {
                            return Err(Failure::new("missing, and the field has no default")
                                .at(Step::Field(f.name.clone())))
                        }
                    };
                    (self.value(&f.ty, value, depth + 1, mode))
                        .map_err(|e| e.at(Step::Field(f.name.clone())))?;
                }
                Ok(())
            }
            Named::Enum { symbols, .. } => {
                let s = v
                    .as_str()
                    .ok_or_else(|| expected(&format!("a symbol of enum {name}"), v))?;
                let i = symbols.iter().position(|x| x == s).ok_or_else(|| {
                    Failure::new(format!(
                        "\"{}\" is not a symbol of enum {name}",
                        crate::shown(s)
                    ))
                })?;
                self.long(i as i64);
                Ok(())
            }
            Named::Fixed { size, .. } => {
                let raw = latin1(v).ok_or_else(|| expected(BYTES, v))?;
                if raw.len() as u64 != *size {
                    return Err(Failure::new(format!(
                        "fixed {name} takes {size} bytes, not {}",
                        raw.len()
                    )));
                }
                self.out.extend_from_slice(&raw);
                Ok(())
            }
        }
    }

    /// A zig-zag varint.
    fn long(&mut self, n: i64) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            self.out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        self.out.push(z as u8);
    }
}

const BYTES: &str = "a string of code points U+0000..U+00FF (bytes)";

fn definition<'a>(avro: &'a Avro, name: &str) -> Res<&'a Def> {
    (avro.named.get(name))
        .ok_or_else(|| Failure::new(format!("the schema does not define the type \"{name}\"")))
}

/// A number, or one of the strings a non-finite float is shown as.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// The bytes of a string of code points U+0000..U+00FF.
fn latin1(v: &Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// The first branch `v` fits: exactly first (a float or double only if decoding gives the same
/// JSON number back, so an integer goes to an integer branch and 0.123456789 skips a float),
/// then loosely (a number in the first number branch).
fn first_fit(avro: &Avro, branches: &[Type], v: &Value) -> Option<usize> {
    (branches.iter().position(|b| fits(avro, b, v, true, LOOK)))
        .or_else(|| branches.iter().position(|b| fits(avro, b, v, false, LOOK)))
}

/// How many levels of arrays, maps and records `fits` looks into: enough to tell a map of
/// booleans from a record of ints, while each value is looked at by at most this many unions
/// above it (no trial encodings, no exponential backtracking).
const LOOK: usize = 2;

/// Whether `v` has the shape of a `ty`, looking `look` levels into arrays, maps and records.
fn fits(avro: &Avro, ty: &Type, v: &Value, exact: bool, look: usize) -> bool {
    let inner = |t: &Type, x: &Value| look == 0 || fits(avro, t, x, exact, look - 1);
    match ty {
        Type::Null => v.is_null(),
        Type::Boolean => v.is_boolean(),
        Type::Int => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        Type::Long => v.is_i64(),
        // Exactly, only a JSON number: "NaN" is a string first.
        Type::Float => {
            number(v).is_some_and(|f| !exact || (v.is_number() && float_json(f as f32) == *v))
        }
        Type::Double => {
            number(v).is_some_and(|f| !exact || (v.is_number() && double_json(f) == *v))
        }
        Type::Bytes(_) => latin1(v).is_some(),
        Type::String => v.is_string(),
        Type::Array(items) => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| inner(items, x))),
        Type::Map(values) => v
            .as_object()
            .is_some_and(|o| o.values().all(|x| inner(values, x))),
        Type::Union(branches) => branches.iter().any(|b| fits(avro, b, v, exact, look)),
        Type::Named(name) => match avro.named.get(name).map(|d| &d.kind) {
            Some(Named::Record { fields }) => v.as_object().is_some_and(|o| {
                o.keys().all(|k| fields.iter().any(|f| &f.name == k))
                    && fields.iter().all(|f| match o.get(&f.name) {
                        Some(x) => inner(&f.ty, x),
                        None => f.default.is_some(),
                    })
            }),
            Some(Named::Enum { symbols, .. }) => {
                v.as_str().is_some_and(|s| symbols.iter().any(|x| x == s))
            }
            Some(Named::Fixed { size, .. }) => {
                latin1(v).is_some_and(|raw| raw.len() as u64 == *size)
            }
            None => false,
        },
    }
}

/// Whether `key` names branch `ty` in Avro's JSON encoding of a union (full or short name).
fn names_branch(ty: &Type, key: &str) -> bool {
    match ty {
        Type::Named(full) => full == key || full.rsplit('.').next() == Some(key),
        other => super::super::type_name(other) == key,
    }
}

fn expected(what: &str, v: &Value) -> Failure {
    Failure::new(format!("expected {what}, not {}", shown_value(v)))
}

/// A value for a message: its JSON kind with a short rendering.
fn shown_value(v: &Value) -> String {
    match v {
        Value::Object(o) => format!("an object of {} keys", o.len()),
        Value::Array(a) => format!("an array of {} items", a.len()),
        other => crate::shown(&other.to_string()),
    }
}
