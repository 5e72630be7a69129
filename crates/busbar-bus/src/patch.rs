//! Changing a subscription by parts (`PATCH /subscriptions/{name}`, `busbar subscription
//! update`): the body is a JSON merge patch (RFC 7396) of the spec. Given fields replace, absent
//! ones keep their value, objects (`delivery`, `target`, `target.headers`, `transform`) merge
//! field by field, and `null` removes a field: an optional one (`pattern`, `transform`,
//! `dead_letter_topic`, `target.tls`, one target header) is gone, one with a default (`start`,
//! `delivery.*`, `target.mode`) takes its default again, and a required one (`name`, `sources`,
//! `target`) is refused. A `target` of the other kind (`topic` given for an HTTP target, `url`
//! for a topic target) replaces the whole target, since the two kinds share no field.
//!
//! A patch that moves an HTTP target to another origin (scheme, host, port) must give every
//! stored header again or remove it (`spec.rs`: stored values stay with their origin).
//!
//! What a read adds to the spec ([`VIEW_FIELDS`]: state, counters, ...) is read-only: updates
//! (PATCH and PUT) accept it with a value a read could show now, so what `GET` answers can be
//! sent back as it is, and refuse any other value, naming the field ([`check_view_fields`]), so
//! `{"state": "paused"}` is not taken for a pause. Nothing here reads or writes state but
//! [`crate::Bus::change`], which reads, merges and writes a spec in one step under the
//! subscriptions lock (shared by PUT and PATCH), so concurrent patches all land.

use crate::error::{BusError, Result};
use crate::spec::{self, invalid, SubscriptionSpec, Target};
use crate::SubState;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The fields `GET /subscriptions/{name}` shows beside the spec. Updates check and drop them.
pub const VIEW_FIELDS: &[&str] = &[
    "state",
    "created",
    "updated",
    "guarantee",
    "lag",
    "retrying",
    "last_failure",
    "counters",
    "owner",
    "config_file",
    "creator",
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
    let merged = spec::from_json(&doc)?;
    check_moved_headers(current, &patch, &merged)?;
    Ok(merged)
}

/// Stored header values stay with the origin they were given for: when `merged` moves an HTTP
/// target to another scheme, host or port, every stored header it still has must be given again
/// by `patch` (a `***` given is refused later, by `keep_masked_from`).
fn check_moved_headers(
    current: &SubscriptionSpec,
    patch: &Value,
    merged: &SubscriptionSpec,
) -> Result<()> {
    let (
        Target::Http {
            url: old,
            headers: stored,
            ..
        },
        Target::Http { url, headers, .. },
    ) = (&current.target, &merged.target)
    else {
        return Ok(());
    };
    if spec::same_origin(old, url) {
        return Ok(());
    }
    let given = &patch["target"]["headers"];
    match headers
        .keys()
        .find(|k| stored.contains_key(*k) && given.get(*k).is_none())
    {
        None => Ok(()),
        Some(name) => Err(invalid(
            &format!("target.headers.{name}"),
            format!(
                "the target moves to another scheme, host or port, and a stored header value \
                 stays with the origin it was given for: give {name:?} again, or null to remove it"
            ),
        )),
    }
}

/// What a read shows in `state` (the part before `:`) while the subscription is not paused.
const ACTIVE_STATES: &[&str] = &[
    "starting",
    "running",
    "elsewhere",
    "unauthorized",
    "backpressure",
    "error",
];

/// Refuses a read-only field ([`VIEW_FIELDS`]) that `given` (an update body) sets to a value no
/// read of the subscription could show now, naming the field: `created`, `owner` and
/// `config_file` must be as they are; `state` must say `paused` exactly when the subscription is
/// paused (pausing and resuming are their own operations); the fields that move on their own
/// (`updated`, `lag`, `retrying`, `last_failure`, `counters`) need only the shape a read gives
/// them, since they change between a read and the write that sends it back. Null on any of them
/// is ignored (a merge patch's "remove", which a read-only field cannot do; the OpenAPI document
/// shows them nullable).
/// `view` makes the current read (only when `given` has a read-only field).
pub fn check_view_fields(
    given: &Value,
    view: impl FnOnce() -> crate::SubscriptionView,
    paused: bool,
) -> Result<()> {
    let Value::Object(fields) = given else {
        return Ok(());
    };
    if !VIEW_FIELDS.iter().any(|k| fields.contains_key(*k)) {
        return Ok(());
    }
    let now = serde_json::to_value(view()).expect("a view encodes");
    for (k, v) in VIEW_FIELDS
        .iter()
        .filter_map(|k| Some((*k, fields.get(*k)?)))
        .filter(|(_, v)| !v.is_null())
    {
        let fits = match k {
            "state" => v.as_str().is_some_and(|s| match paused {
                true => s == "paused",
                false => ACTIVE_STATES.contains(&s.split(':').next().unwrap_or("").trim()),
            }),
            "created" | "owner" | "config_file" | "creator" => *v == now[k],
            // Follows the target, which the same update may change.
            "updated" | "guarantee" => v.is_string(),
            "lag" | "retrying" => v.is_u64(),
            "last_failure" => v.is_null() || v.is_object(),
            _ => v.is_object(),
        };
        if !fits {
            return Err(invalid(k, read_only_why(k, &now[k])));
        }
    }
    Ok(())
}

fn read_only_why(field: &str, now: &Value) -> String {
    match field {
        "state" => format!(
            "read-only (it is {now}); pausing and resuming are their own operations \
             (POST /subscriptions/{{name}}/pause or /resume, `busbar subscription pause`)"
        ),
        "created" | "owner" | "config_file" | "creator" => {
            format!("read-only; it is {now}: send it as read or leave it out")
        }
        _ => "read-only and set by busbar; send it as read or leave it out".to_string(),
    }
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
    /// `PUT`: replaces `name`'s spec by `body` (`name` may be left out; the read-only fields of a
    /// read are checked by [`check_view_fields`] and dropped, so a read can be sent back).
    pub async fn replace(&self, name: &str, body: &Value) -> Result<crate::SubscriptionView> {
        self.owners.check(name)?;
        let mut v = body.clone();
        let Value::Object(m) = &mut v else {
            return Err(invalid(
                "body",
                "must be a JSON object: the subscription's fields",
            ));
        };
        m.entry("name")
            .or_insert_with(|| Value::String(name.into()));
        without_view_fields(&mut v);
        let spec = spec::from_json(&v)?;
        if spec.name != name {
            return Err(invalid("name", format!("must stay {name:?}")));
        }
        self.change(name, body, |_| Ok(spec.clone())).await
    }

    /// [`crate::Bus::patch`] that stores the merged spec only if `check` accepts it: `check` sees
    /// the spec the patch makes of the spec actually stored, under the lock that writes it, so a
    /// concurrent change between a caller's check and the write cannot slip past it (the HTTP
    /// front end checks the caller's ACLs here). `Ok(Err(e))`: `check` refused, nothing changed.
    pub async fn patch_checked<E>(
        &self,
        name: &str,
        patch: &Value,
        check: impl Fn(&SubscriptionSpec) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<crate::SubscriptionView, E>> {
        let refused = std::sync::Mutex::new(None);
        let make = |current: &SubscriptionSpec| {
            let merged = merge(current, patch)?;
            check(&merged).map_err(|e| {
                *refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                invalid("", "refused by the caller's check")
            })?;
            Ok(merged)
        };
        let changed = self.change(name, patch, make).await;
        match refused.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Ok(Err(e)),
            None => changed.map(Ok),
        }
    }

    /// Replaces `name`'s spec by `make(current spec)` (positions, retry state and counters are
    /// kept): the read of the current spec, `make` and the write happen under one hold of the
    /// subscriptions lock, so concurrent changes apply one after another and none is lost.
    /// `given` is the request's body, whose read-only fields are checked ([`check_view_fields`];
    /// `Null` when there is none). A result equal to the current spec once `***` header values
    /// are resolved changes (and restarts) nothing: a read sent back keeps the worker running.
    ///
    /// All or nothing: every step that can fail (validation, start positions of new sources,
    /// saving the spec) runs before the old worker stops, so a failed change leaves it running.
    pub(crate) async fn change(
        &self,
        name: &str,
        given: &Value,
        make: impl Fn(&SubscriptionSpec) -> Result<SubscriptionSpec>,
    ) -> Result<crate::SubscriptionView> {
        self.owners.check(name)?;
        self.sync().await?;
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
            spec.keep_masked_from(&e.record.spec)?;
            check_view_fields(given, || self.view(e), e.record.paused)?;
            if spec == e.record.spec {
                return Ok(self.view(e));
            }
            if spec.dead_letter_topic != planned.dead_letter_topic {
                continue;
            }
            let compiled = Arc::new(self.validate(spec)?);
            // Positions only for partitions that have none: harmless if the change fails later.
            // An older busbar's positions of the current sources are taken over first.
            // In cluster mode they go in the update's transaction, where the key has none.
            let start = if self.shared().is_some() {
                self.prepare_sources(&compiled).await;
                let rows = self.start_rows(&compiled)?;
                self.ctx.positions.encode(name, &rows)
            } else {
                let sources = e.record.spec.sources.clone();
                crate::positions::take_over_legacy(&self.ctx, name, &sources).await?;
                self.commit_start(&compiled).await?;
                vec![]
            };
            let e = subs.get_mut(name).expect("checked");
            let old = (e.record.clone(), e.compiled.clone());
            e.record.spec = compiled.spec.clone();
            e.record.updated_ms = self.now();
            e.compiled = compiled.clone();
            let saved = self.persist_with(&mut subs, name, start).await;
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
            if self.shared().is_some() {
                // The lease holder loads the new start positions and runs it again (`cluster.rs`).
                if !e.record.paused {
                    *e.status.lock().unwrap_or_else(|e| e.into_inner()) = SubState::Elsewhere;
                }
            } else if !e.record.paused {
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

    fn view() -> crate::SubscriptionView {
        crate::SubscriptionView {
            spec: current(),
            state: crate::SubState::Running,
            created: String::new(),
            updated: String::new(),
            guarantee: "at_least_once",
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
            creator: Some(crate::Creator {
                user: "alice".into(),
                host: std::net::Ipv4Addr::LOCALHOST.into(),
            }),
        }
    }

    #[test]
    fn view_fields_are_exactly_what_a_read_adds_to_the_spec() {
        let read = serde_json::to_value(view()).unwrap();
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

    #[test]
    fn a_moved_target_must_give_its_stored_headers_again() {
        let err = |p: Value| merge(&current(), &p).unwrap_err().to_string();
        // Only the URL, to another host: the stored values would follow it.
        let e = err(json!({"target": {"url": "http://other/p"}}));
        assert!(e.contains("target.headers.j"), "{e}");
        // One given again is not enough while another is left to follow.
        let e = err(json!({"target": {"url": "https://h/p", "headers": {"j": "new"}}}));
        assert!(e.contains("target.headers.k"), "{e}");
        assert!(err(json!({"target": {"url": "http://h:8080/p"}})).contains("target.headers"));
        // Given again or removed: accepted.
        let v = merged(json!({"target": {"url": "http://other/p",
                                         "headers": {"j": "new", "k": null}}}));
        assert_eq!(v["target"]["headers"], json!({"j": "new"}));
        let v = merged(json!({"target": {"url": "http://other/p", "headers": null}}));
        assert!(v["target"].get("headers").is_none(), "{v}");
        // The same origin (another path, the default port written out) keeps them.
        let v = merged(json!({"target": {"url": "http://H:80/q"}}));
        assert_eq!(v["target"]["headers"], json!({"k": "v", "j": "w"}));
    }

    #[test]
    fn read_only_fields_are_refused_only_with_a_value_a_read_could_not_show() {
        let read = serde_json::to_value(view()).unwrap();
        let check = |body: Value, paused: bool| check_view_fields(&body, view, paused);
        // A read sent back, and its moving fields with other values of their shape.
        check(read.clone(), false).unwrap();
        check(
            json!({"lag": 7, "retrying": 2, "updated": "x", "last_failure": null}),
            false,
        )
        .unwrap();
        check(json!({"state": "backpressure: 3 waiting"}), false).unwrap();
        check(json!({"state": "paused"}), true).unwrap();
        // Null on a read-only field is ignored (the OpenAPI document shows them nullable).
        check(
            json!({"state": null, "config_file": null, "owner": null}),
            false,
        )
        .unwrap();
        for (body, paused, field) in [
            (json!({"state": "paused"}), false, "state"),
            (json!({"state": "running"}), true, "state"),
            (json!({"state": "sleeping"}), false, "state"),
            (json!({"owner": "api"}), false, "owner"),
            (json!({"created": "2020-01-01T00:00:00Z"}), false, "created"),
            (json!({"lag": -1}), false, "lag"),
            (json!({"counters": 5}), false, "counters"),
            (json!({"last_failure": "x"}), false, "last_failure"),
        ] {
            let e = check(body.clone(), paused).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{field}:")) || e.contains(&format!(" {field}:")),
                "{body}: {e}"
            );
        }
    }
}
