//! busbar-rules: the EventBridge event-pattern language (shared/spec/bus-semantics.md §1). A
//! [`Pattern`] is parsed and validated once (errors name the offending path), then matched against
//! JSON events with array consistency: fields of one pattern object must all be satisfied by the
//! same element of an event array. Pure: no I/O, no clock.
//!
//! Decisions where the references disagree (written here, tested in `tests/vectors.rs`):
//! - **Numeric equality:** a number in an exact-match leaf matches numerically equal event numbers
//!   (`[300]` matches `300.0` and `3.0e2`), as event-ruler does, not by text as the EventBridge
//!   guide says.
//! - **Numeric ranges:** full IEEE-754 binary64, NaN and infinities refused (event-ruler today), not
//!   the guide's ±5.0e9 limit.
//! - **Ignore case** compares the Unicode upper-case mappings (`"straße"` equals `"STRASSE"`).
//! - **Paths are segment lists:** `{"a":{"b.c":..}}` and `{"a":{"b":{"c":..}}}` are different rules.
//!
//! ```
//! use busbar_rules::Pattern;
//! use serde_json::json;
//! let p = Pattern::parse(&json!({"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}})).unwrap();
//! assert!(p.matches(&json!({"source": "shop", "detail": {"total": 250}})));
//! assert!(!p.matches(&json!({"source": "shop", "detail": {"total": 50}})));
//! ```

mod condition;
mod pattern;
mod ruleset;
mod transform;

pub use pattern::{Pattern, PatternError, LIMITS};
pub use ruleset::RuleSet;
pub use transform::{
    OutputTooLarge, Transform, OUTPUT_BYTES_MAX, TEMPLATE_BYTES_MAX, VARIABLES_MAX,
};
