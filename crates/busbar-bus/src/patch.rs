//! Changing a subscription by parts (`PATCH /subscriptions/{name}`, `busbar subscription
//! update`): the body is a JSON merge patch (RFC 7396) of the spec. Given fields replace, absent
//! ones keep their value, objects (`delivery`, `target`, `target.headers`, `transform`) merge
//! field by field, and `null` removes a field: an optional one (`pattern`, `transform`,
//! `dead_letter_topic`, `target.tls`, one target header) is gone, one with a default (`start`,
//! `delivery.*`, `target.mode`) takes its default again, and a required one (`name`, `sources`,
//! `target`) is refused. A `target` of the other kind (`topic` given for an HTTP target, `url`
//! for a topic target) replaces the whole target, since the two kinds share no field.
//!
//! What a read adds to the spec ([`VIEW_FIELDS`]: state, counters, ...) is read-only: updates
//! (PATCH and PUT) drop it, so what `GET` answers can be sent back as it is. Nothing here reads
//! or writes state but [`crate::Bus::change`], which reads, merges and writes a spec in one step
//! under the subscriptions lock (shared by PUT and PATCH), so concurrent patches all land.

use crate::error::{BusError, Result};
use crate::spec::{self, invalid, SubscriptionSpec};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The fields `GET /subscriptions/{name}` shows beside the spec. Updates ignore them.
pub const VIEW_FIELDS: &[&str] = &[
    "state",
    "created",
    "updated",
    "lag",
    "retrying",
    "last_failure",
    "counters",
    "owner",
    "config_file",
];

/// Fields a spec cannot do without: a patch may change them, not remove them.
const REQUIRED: &[&str] = &["name", "sources", "target"];

/// Removes the read-only [`VIEW_FIELDS`] from an update body.
pub fn without_view_fields(body: &mut Value) {
    if let Value::Object(m) = body {
        for k in VIEW_FIELDS {
            m.remove(*k);
        }
    }
}

/// `current` with `patch` merged in. The result is parsed (every error names its field) but not
/// yet validated against the broker's topics: [`crate::Bus::patch`] does that.
pub fn merge(current: &SubscriptionSpec, patch: &Value) -> Result<SubscriptionSpec> {
    let Value::Object(fields) = patch else {
        return Err(invalid(
            "body",
            "a merge patch must be a JSON object of the fields to change",
        ));
    };
    let mut patch = Value::Object(fields.clone());
    without_view_fields(&mut patch);
    for k in REQUIRED {
        if patch.get(*k).is_some_and(Value::is_null) {
            return Err(invalid(k, "is required; null would remove it"));
        }
    }
    let mut doc = serde_json::to_value(current).expect("a spec encodes");
    if target_kind(&patch["target"]).is_some_and(|k| Some(k) != target_kind(&doc["target"])) {
        doc["target"] = Value::Object(Map::new());
    }
    merge_into(&mut doc, &patch);
    spec::from_json(&doc)
}

/// `url` or `topic`: the field that tells a target's kind.
fn target_kind(target: &Value) -> Option<&'static str> {
    ["url", "topic"]
        .into_iter()
        .find(|k| target.get(k).is_some())
}

/// RFC 7396 MergePatch: objects merge, `null` removes, anything else replaces.
fn merge_into(doc: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let doc = doc.as_object_mut().expect("made an object above");
    for (k, v) in fields {
        if v.is_null() {
            doc.remove(k);
        } else {
            merge_into(doc.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

impl crate::Bus {
    /// Replaces `name`'s spec by `make(current spec)` (positions, retry state and counters are
    /// kept): the read of the current spec, `make` and the write happen under one hold of the
    /// subscriptions lock, so concurrent changes apply one after another and none is lost. With
    /// `skip_unchanged`, a result equal to the current spec changes (and restarts) nothing.
    ///
    /// All or nothing: every step that can fail (validation, start positions of new sources,
    /// saving the spec) runs before the old worker stops, so a failed change leaves it running.
    pub(crate) async fn change(
        &self,
        name: &str,
        make: impl Fn(&SubscriptionSpec) -> Result<SubscriptionSpec>,
        skip_unchanged: bool,
    ) -> Result<crate::SubscriptionView> {
        self.owners.check(name)?;
        loop {
            // The dead-letter topic is claimed before the lock (the claim waits out topic
            // deletions); a change in between that moved it means claiming again.
            let planned = match self.subs.lock().await.get(name) {
                Some(e) => make(&e.record.spec)?,
                None => return Err(BusError::UnknownSubscription(name.into())),
            };
            let _claim = self.claim(&planned).await;
            let mut subs = self.subs.lock().await;
            let Some(e) = subs.get(name) else {
                return Err(BusError::UnknownSubscription(name.into()));
            };
            let mut spec = make(&e.record.spec)?;
            if spec.name != name {
                return Err(invalid("name", format!("must stay {name:?}")));
            }
            if skip_unchanged && spec == e.record.spec {
                return Ok(self.view(e));
            }
            spec.keep_masked_from(&e.record.spec)?;
            if spec.dead_letter_topic != planned.dead_letter_topic {
                continue;
            }
            let compiled = Arc::new(self.validate(spec)?);
            // Positions only for partitions that have none: harmless if the change fails later.
            // An older busbar's positions of the current sources are taken over first.
            let sources = e.record.spec.sources.clone();
            crate::positions::take_over_legacy(&self.ctx, name, &sources).await?;
            self.commit_start(&compiled).await?;
            let e = subs.get_mut(name).expect("checked");
            let old = (e.record.clone(), e.compiled.clone());
            e.record.spec = compiled.spec.clone();
            e.record.updated_ms = self.now();
            e.compiled = compiled.clone();
            let saved = self.save(&subs);
            let e = subs.get_mut(name).expect("present");
            if let Err(err) = saved {
                (e.record, e.compiled) = old;
                return Err(err);
            }
            // A run would go on with the old pattern and target: it ends, to be resumed anew.
            let why = "the subscription was updated";
            crate::replay::stop_all(&e.replays, crate::replay::RunState::Stopped, why).await;
            if let Some(h) = e.handle.take() {
                h.stop().await;
            }
            if !e.record.paused {
                e.handle = Some(self.spawn(e));
            }
            return Ok(self.view(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn current() -> SubscriptionSpec {
        spec::from_json(&json!({
            "name": "s", "sources": ["a"], "pattern": {"x": [1]},
            "target": {"url": "http://h/p", "headers": {"k": "v", "j": "w"}},
            "delivery": {"max_attempts": 9, "timeout_ms": 100}, "dead_letter_topic": "d"}))
        .unwrap()
    }

    fn merged(patch: Value) -> Value {
        serde_json::to_value(merge(&current(), &patch).unwrap()).unwrap()
    }

    #[test]
    fn given_fields_replace_objects_merge_and_null_removes_or_resets() {
        let v = merged(json!({"delivery": {"max_attempts": 3, "timeout_ms": null},
                               "target": {"headers": {"k": null, "n": "m"}},
                               "pattern": null, "sources": ["b", "c"]}));
        assert_eq!(v["delivery"]["max_attempts"], 3);
        assert_eq!(
            v["delivery"]["timeout_ms"], 5000,
            "null resets to the default"
        );
        assert_eq!(v["target"]["url"], "http://h/p");
        assert_eq!(v["target"]["headers"], json!({"j": "w", "n": "m"}));
        assert!(v.get("pattern").is_none());
        assert_eq!(v["sources"], json!(["b", "c"]));
        assert_eq!(v["dead_letter_topic"], "d");
        assert_eq!(merged(json!({})), serde_json::to_value(current()).unwrap());
    }

    #[test]
    fn view_fields_are_exactly_what_a_read_adds_to_the_spec() {
        let view = crate::SubscriptionView {
            spec: current(),
            state: crate::SubState::Running,
            created: String::new(),
            updated: String::new(),
            lag: 0,
            retrying: 0,
            last_failure: Some(crate::LastFailure {
                reason: String::new(),
                status: None,
                error: String::new(),
                at: String::new(),
            }),
            counters: Default::default(),
            owner: crate::Owner::Config,
            config_file: Some(String::new()),
        };
        let read = serde_json::to_value(view).unwrap();
        let spec = serde_json::to_value(current()).unwrap();
        let mut added: Vec<&str> = (read.as_object().unwrap().keys())
            .map(String::as_str)
            .filter(|k| spec.get(k).is_none())
            .collect();
        let mut want = VIEW_FIELDS.to_vec();
        added.sort_unstable();
        want.sort_unstable();
        assert_eq!(added, want);
    }

    #[test]
    fn a_target_of_the_other_kind_replaces_the_target() {
        let v = merged(json!({"target": {"topic": "t"}}));
        assert_eq!(v["target"], json!({"topic": "t"}));
    }

    #[test]
    fn read_only_fields_are_ignored_and_bad_patches_name_the_field() {
        let v = merged(json!({"state": "paused", "counters": {}, "owner": "api", "lag": 3}));
        assert_eq!(v, serde_json::to_value(current()).unwrap());
        let err = |p: Value| merge(&current(), &p).unwrap_err().to_string();
        assert!(err(json!([1])).contains("body"));
        assert!(err(json!({"sources": null})).contains("sources: is required"));
        assert!(err(json!({"delivery": {"max_attempts": "x"}})).contains("delivery.max_attempts"));
        assert!(err(json!({"colour": 1})).contains("colour"));
        assert!(err(json!({"target": {"topic": "t", "url": "http://h/"}})).contains("target"));
    }
}
