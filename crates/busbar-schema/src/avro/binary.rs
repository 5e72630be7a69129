//! Avro binary encoding (the spec's "Binary Encoding"), to and from the *natural* JSON users
//! write and match on: the value a schema-checked payload holds, for strict schema validation,
//! for patterns that match Avro events by content, and for HTTP publish that encodes JSON.
//!
//! The natural mapping (also in docs/schema-registry.md):
//! - null, boolean, int, long, float, double → JSON null, boolean, number (a float is shown by
//!   its shortest decimal form, so 0.1f32 is `0.1`); NaN and ±infinity, which JSON lacks, are
//!   the strings `"NaN"`, `"Infinity"` and `"-Infinity"` (as Java Avro's JSON encoder writes them);
//! - string → string; bytes and fixed → a string of one code point (U+0000..U+00FF) per byte, as
//!   Avro's JSON encoding writes them (decimals included: no logical type is interpreted);
//! - record → object of its fields; map → object; array → array; enum → its symbol;
//! - union → the branch's value itself (null → null), with no `{"type": value}` wrapper.
//!
//! Decoding consumes exactly all bytes. Hostile input is bounded by [`CodecLimits`]: nesting
//! depth and total items; a block count is checked against the bytes left (at the smallest size
//! an item can take) before anything is allocated, so no declared length or count allocates
//! beyond the input. Errors name the path of the failing value (`field order.items[3].price:
//! ...`). Nothing here panics on any input.

mod encode;

use super::{Avro, Named, Type};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::fmt::Write as _;

pub use encode::encode;

/// Bounds on one value, decoded or encoded; exceeding one answers `Err` naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecLimits {
    /// Deepest nesting of values (records, arrays, maps, unions inside one another), config
    /// `schema_registry.codec_depth_max`. Default 128, serde_json's own nesting limit, so any
    /// JSON value busbar parses can be encoded.
    pub depth_max: usize,
    /// Most array items plus map entries in one value, at every level together, config
    /// `schema_registry.codec_items_max`. Default 1,000,000: items of zero bytes (nulls, empty
    /// records) are bounded by this alone, so it caps what a tiny payload can make in memory.
    pub items_max: usize,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            depth_max: 128,
            items_max: 1_000_000,
        }
    }
}

/// One step of the path to a failing value.
#[derive(Debug)]
enum Step {
    Field(String),
    Index(u64),
    Key(String),
    /// A map entry whose key failed, by position.
    Entry(u64),
}

/// An error with the path to the value that failed, innermost step last.
#[derive(Debug)]
struct Failure {
    /// Steps pushed while unwinding: outermost last.
    steps: Vec<Step>,
    message: String,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            steps: Vec::new(),
            message: message.into(),
        }
    }

    fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// `field order.items[3].price: message`, or the message alone at the top.
    fn render(self) -> String {
        if self.steps.is_empty() {
            return self.message;
        }
        let mut path = String::new();
        for step in self.steps.iter().rev() {
            match step {
                Step::Field(name) if path.is_empty() => path.push_str(name),
                Step::Field(name) => {
                    let _ = write!(path, ".{name}");
                }
                Step::Index(i) => {
                    let _ = write!(path, "[{i}]");
                }
                Step::Entry(i) => {
                    let _ = write!(path, "[entry {i}'s key]");
                }
                Step::Key(k) => {
                    let _ = write!(path, "[{}]", Value::String(crate::shown(k)));
                }
            }
        }
        format!("field {path}: {}", self.message)
    }
}

type Res<T> = Result<T, Failure>;

/// Most array items and map entries one byte of input may stand for (plus [`ITEMS_SLACK`]): a
/// value's items are bounded by its size, so decoding a batch costs at most this many values per
/// byte, whatever its items are made of.
pub const ITEMS_PER_INPUT_BYTE: u64 = 8;

/// Items any value may hold whatever its size.
pub const ITEMS_SLACK: u64 = 256;

/// Decodes `bytes`, the Avro binary encoding of one value of `avro`'s root type, to its
/// natural JSON (see the module docs). All bytes must be consumed.
pub fn decode(avro: &Avro, bytes: &[u8], limits: &CodecLimits) -> Result<Value, String> {
    let root = avro.root.as_ref().ok_or("the schema has no root type")?;
    let mut reader = Reader {
        avro,
        bytes,
        pos: 0,
        items: 0,
        limits,
        min_sizes: MinSizes::default(),
    };
    let value = reader.value(root, 0).map_err(Failure::render)?;
    let left = bytes.len() - reader.pos;
    if left > 0 {
        return Err(format!("{left} bytes left after the value"));
    }
    Ok(value)
}

struct Reader<'a> {
    avro: &'a Avro,
    bytes: &'a [u8],
    pos: usize,
    /// Array items and map entries read so far.
    items: usize,
    limits: &'a CodecLimits,
    min_sizes: MinSizes<'a>,
}

impl<'a> Reader<'a> {
    /// The value of `ty`; `depth` counts the records, arrays, maps and unions around it.
    fn value(&mut self, ty: &'a Type, depth: usize) -> Res<Value> {
        if depth > self.limits.depth_max && !is_scalar(ty) {
            return Err(too_deep(self.limits));
        }
        Ok(match ty {
            Type::Null => Value::Null,
            Type::Boolean => match self.byte()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Failure::new(format!("a boolean is 0 or 1, not {b}"))),
            },
            Type::Int => Value::from(self.int()?),
            Type::Long => Value::from(self.long()?),
            Type::Float => {
                let raw = self.take(4)?;
                float_json(f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
            }
            Type::Double => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(self.take(8)?);
                double_json(f64::from_le_bytes(raw))
            }
            Type::Bytes(_) => {
                let len = self.length("bytes")?;
                Value::String(bytes_to_string(self.take(len)?))
            }
            Type::String => Value::String(self.string()?),
            Type::Array(items) => self.array(items, depth)?,
            Type::Map(values) => self.map(values, depth)?,
            Type::Union(branches) => {
                let index = self.long()?;
                let branch = usize::try_from(index)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| {
                        Failure::new(format!(
                            "union branch {index} does not exist (the union has {})",
                            branches.len()
                        ))
                    })?;
                self.value(branch, depth + 1)?
            }
            Type::Named(name) => self.named(name, depth)?,
        })
    }

    fn named(&mut self, name: &'a str, depth: usize) -> Res<Value> {
        let def = self.avro.named.get(name).ok_or_else(|| {
            Failure::new(format!("the schema does not define the type \"{name}\""))
        })?;
        match &def.kind {
            Named::Record { fields } => {
                let mut out = Map::new();
                for f in fields {
                    let v = (self.value(&f.ty, depth + 1))
                        .map_err(|e| e.at(Step::Field(f.name.clone())))?;
                    out.insert(f.name.clone(), v);
                }
                Ok(Value::Object(out))
            }
            Named::Enum { symbols, .. } => {
                let index = self.long()?;
                let symbol = usize::try_from(index)
                    .ok()
                    .and_then(|i| symbols.get(i))
                    .ok_or_else(|| {
                        Failure::new(format!(
                            "enum {name} has no symbol {index} (it has {})",
                            symbols.len()
                        ))
                    })?;
                Ok(Value::String(symbol.clone()))
            }
            Named::Fixed { size, .. } => {
                let size = usize::try_from(*size).map_err(|_| short(*size, 0))?;
                Ok(Value::String(bytes_to_string(self.take(size)?)))
            }
        }
    }

    fn array(&mut self, items: &'a Type, depth: usize) -> Res<Value> {
        let mut out = Vec::new();
        while let Some(count) = self.block(items, "array items")? {
            out.reserve(count);
            for _ in 0..count {
                let index = out.len() as u64;
                let v = (self.value(items, depth + 1)).map_err(|e| e.at(Step::Index(index)))?;
                out.push(v);
            }
        }
        Ok(Value::Array(out))
    }

    fn map(&mut self, values: &'a Type, depth: usize) -> Res<Value> {
        let mut out = Map::new();
        // The smallest entry is a key (at least its length byte) and the value.
        while let Some(count) = self.block(values, "map entries")? {
            for _ in 0..count {
                let key = (self.string()).map_err(|e| e.at(Step::Entry(out.len() as u64)))?;
                let v = match self.value(values, depth + 1) {
                    Ok(v) => v,
                    Err(e) => return Err(e.at(Step::Key(key))),
                };
                out.insert(key, v);
            }
        }
        Ok(Value::Object(out))
    }

    /// The next block's item count (`None` at the end block), checked against the items limit
    /// and against the bytes left at the smallest size an item of `item` can take.
    fn block(&mut self, item: &'a Type, what: &str) -> Res<Option<usize>> {
        let count = self.long()?;
        if count == 0 {
            return Ok(None);
        }
        let count = if count < 0 {
            // A negative count is followed by the block's size in bytes (for skipping).
            let size = self.long()?;
            let left = self.bytes.len() - self.pos;
            if size < 0 || size as u64 > left as u64 {
                return Err(Failure::new(format!(
                    "a block of {what} declares {size} bytes but {left} are left"
                )));
            }
            count.unsigned_abs()
        } else {
            count as u64
        };
        let room = self.limits.items_max - self.items.min(self.limits.items_max);
        if count > room as u64 {
            return Err(Failure::new(format!(
                "more than {} array items and map entries in the value (schema_registry.codec_items_max)",
                self.limits.items_max
            )));
        }
        let min = self.min_sizes.of(self.avro, item) + u64::from(what == "map entries");
        let left = (self.bytes.len() - self.pos) as u64;
        if count.saturating_mul(min) > left {
            return Err(Failure::new(format!(
                "a block declares {count} {what} of at least {min} bytes each, but {left} bytes are left"
            )));
        }
        // Items of zero bytes (nulls, empty records) cost no input: without this bound a few
        // bytes could ask for items_max values each, and a batch of such records for
        // items_max times its record count.
        let per_input = (self.bytes.len() as u64)
            .saturating_mul(ITEMS_PER_INPUT_BYTE)
            .saturating_add(ITEMS_SLACK);
        if (self.items as u64).saturating_add(count) > per_input {
            return Err(Failure::new(format!(
                "{} {what} for {} bytes of input: more than {ITEMS_PER_INPUT_BYTE} items per byte",
                self.items as u64 + count,
                self.bytes.len()
            )));
        }
        // count <= room <= items_max, a usize.
        let count = count as usize;
        self.items += count;
        Ok(Some(count))
    }

    fn byte(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(short(n as u64, left));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A zig-zag varint of at most 64 bits.
    fn long(&mut self) -> Res<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self
                .take(1)
                .map_err(|_| Failure::new("the input ends inside a number"))?[0];
            if shift == 63 && b > 1 {
                return Err(Failure::new("a varint overflows 64 bits"));
            }
            raw |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(Failure::new("a varint overflows 64 bits"))
    }

    /// A zig-zag varint of at most 32 bits.
    fn int(&mut self) -> Res<i32> {
        let long = self.long()?;
        i32::try_from(long)
            .map_err(|_| Failure::new(format!("{long} does not fit an int (32 bits)")))
    }

    /// A byte length: a non-negative long no larger than the bytes left.
    fn length(&mut self, what: &str) -> Res<usize> {
        let len = self.long()?;
        let left = self.bytes.len() - self.pos;
        match usize::try_from(len) {
            Ok(n) if n <= left => Ok(n),
            _ => Err(Failure::new(format!(
                "{what} of length {len} but {left} bytes are left"
            ))),
        }
    }

    fn string(&mut self) -> Res<String> {
        let len = self.length("a string")?;
        let raw = self.take(len)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(Failure::new(format!(
                "a string is not UTF-8 (byte {} of {len})",
                e.valid_up_to()
            ))),
        }
    }
}

/// Whether `ty` holds no other value (so it adds no nesting).
fn is_scalar(ty: &Type) -> bool {
    !matches!(
        ty,
        Type::Array(_) | Type::Map(_) | Type::Union(_) | Type::Named(_)
    )
}

fn short(wanted: u64, left: usize) -> Failure {
    Failure::new(format!(
        "the input ends early: {wanted} bytes wanted, {left} left"
    ))
}

fn too_deep(limits: &CodecLimits) -> Failure {
    Failure::new(format!(
        "values nested more than {} deep (schema_registry.codec_depth_max)",
        limits.depth_max
    ))
}

/// Bytes as Avro's JSON encoding writes them: one code point U+0000..U+00FF per byte.
fn bytes_to_string(raw: &[u8]) -> String {
    raw.iter().map(|&b| char::from(b)).collect()
}

/// A float by its shortest decimal form (0.1f32 is 0.1, not 0.10000000149011612).
fn float_json(f: f32) -> Value {
    if !f.is_finite() {
        return non_finite(f64::from(f));
    }
    let shortest: f64 = f.to_string().parse().unwrap_or(f64::from(f));
    Number::from_f64(shortest).map_or(Value::Null, Value::Number)
}

fn double_json(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None => non_finite(f),
    }
}

fn non_finite(f: f64) -> Value {
    Value::String(
        if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .into(),
    )
}

/// The fewest bytes a value of each type takes, memoised per named type: what a block's
/// declared count is checked against before it is read.
#[derive(Default)]
struct MinSizes<'a> {
    named: HashMap<&'a str, u64>,
}

impl<'a> MinSizes<'a> {
    fn of(&mut self, avro: &'a Avro, ty: &'a Type) -> u64 {
        match ty {
            Type::Null => 0,
            Type::Float => 4,
            Type::Double => 8,
            // A varint, a length, a block count or a branch index: at least one byte.
            Type::Boolean
            | Type::Int
            | Type::Long
            | Type::Bytes(_)
            | Type::String
            | Type::Array(_)
            | Type::Map(_)
            | Type::Union(_) => 1,
            Type::Named(name) => self.named(avro, name),
        }
    }

    fn named(&mut self, avro: &'a Avro, name: &'a str) -> u64 {
        if let Some(&n) = self.named.get(name) {
            return n;
        }
        // A record met again inside itself counts 0: a lower bound, and it terminates.
        self.named.insert(name, 0);
        let n = match avro.named.get(name).map(|d| &d.kind) {
            Some(Named::Record { fields }) => fields
                .iter()
                .fold(0u64, |sum, f| sum.saturating_add(self.of(avro, &f.ty))),
            Some(Named::Fixed { size, .. }) => *size,
            Some(Named::Enum { .. }) => 1,
            None => 0,
        };
        self.named.insert(name, n);
        n
    }
}
