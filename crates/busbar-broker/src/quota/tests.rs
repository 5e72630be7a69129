//! Precedence, entity and filter checks of the quota table (window math: `rate.rs`).

use super::*;
use busbar_log::disk::MemStorage;
use busbar_log::SystemClock;

fn quotas() -> Quotas {
    Quotas::open(
        Arc::new(MemStorage::default()),
        Arc::new(SystemClock),
        QuotaConfig::default(),
    )
    .unwrap()
}

fn entity(parts: &[(&str, Option<&str>)]) -> Entity {
    Entity::from_parts(parts.iter().copied()).unwrap()
}

fn set(q: &Quotas, parts: &[(&str, Option<&str>)], value: f64) {
    let ops = [Op::Set("producer_byte_rate".into(), value)];
    futures_lite(q.alter(&entity(parts), &ops, false)).unwrap();
}

/// Runs a future to completion on a current-thread runtime.
fn futures_lite<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn the_most_specific_quota_applies_in_kafkas_order() {
    let q = quotas();
    let (u, c, d) = ("user", "client-id", None);
    // Set from least to most specific; after each, that one applies.
    let levels: [&[(&str, Option<&str>)]; 8] = [
        &[(c, d)],
        &[(c, Some("app"))],
        &[(u, d)],
        &[(u, d), (c, d)],
        &[(u, d), (c, Some("app"))],
        &[(u, Some("alice"))],
        &[(u, Some("alice")), (c, d)],
        &[(u, Some("alice")), (c, Some("app"))],
    ];
    for (i, parts) in levels.iter().enumerate() {
        set(&q, parts, (i + 1) as f64 * 100.0);
        let a = q.applied("alice", "app", Kind::Produce).unwrap();
        assert_eq!(a.entity, entity(parts), "level {i}");
        assert_eq!(a.quota, (i + 1) as f64 * 100.0);
    }
    // Another user falls through alice's levels to users/<default>/clients/app.
    let bob = q.applied("bob", "app", Kind::Produce).unwrap();
    assert_eq!(bob.entity, entity(&[(u, d), (c, Some("app"))]));
    // A key no entity sets: no quota.
    assert_eq!(q.applied("alice", "app", Kind::Fetch), None);
}

#[test]
fn a_default_quota_is_tracked_per_actual_name() {
    let q = quotas();
    set(&q, &[("user", None)], 1000.0);
    // alice spends her own 10 s allowance; bob's is untouched.
    assert!(q.record("alice", "x", Kind::Produce, 50_000.0, true) > 0);
    assert!(
        q.throttle_now("alice", "y", Kind::Produce) > 0,
        "per user, any client"
    );
    assert_eq!(q.throttle_now("bob", "x", Kind::Produce), 0);
}

#[test]
fn entities_keys_and_values_are_checked() {
    let bad: &[&[(&str, Option<&str>)]] = &[
        &[],
        &[("user", Some("a")), ("user", Some("b"))],
        &[("ip", Some("1.2.3.4"))],
        &[("group", Some("g"))],
    ];
    for parts in bad {
        let e = Entity::from_parts(parts.iter().copied());
        assert!(
            matches!(e, Err(BrokerError::InvalidRequest(_))),
            "{parts:?}"
        );
    }
    let long = "x".repeat(ENTITY_NAME_BYTES_MAX + 1);
    assert!(Entity::from_parts([("user", Some(long.as_str()))]).is_err());
    assert!(validate("producer_byte_rate", 1024.0).is_ok());
    assert!(validate("request_percentage", 12.5).is_ok());
    for (k, v) in [
        ("producer_byte_rate", 10.5),
        ("consumer_byte_rate", 0.0),
        ("consumer_byte_rate", -1.0),
        ("request_percentage", f64::NAN),
        ("controller_mutation_rate", 1.0),
        ("bogus", 1.0),
    ] {
        assert!(validate(k, v).is_err(), "{k}={v}");
    }
    let q = quotas();
    let e = entity(&[("user", Some("a"))]);
    let twice = [
        Op::Set("producer_byte_rate".into(), 1.0),
        Op::Remove("producer_byte_rate".into()),
    ];
    assert!(futures_lite(q.alter(&e, &twice, false)).is_err());
    // validate_only writes nothing.
    let ok = [Op::Set("producer_byte_rate".into(), 1.0)];
    futures_lite(q.alter(&e, &ok, true)).unwrap();
    assert!(q.list().is_empty() && !q.any());
}

#[test]
fn filters_match_exact_default_any_and_strict() {
    let q = quotas();
    set(&q, &[("user", Some("alice"))], 1.0);
    set(&q, &[("user", None)], 2.0);
    set(
        &q,
        &[("user", Some("alice")), ("client-id", Some("app"))],
        3.0,
    );
    set(&q, &[("client-id", None)], 4.0);
    let values = |f: Filter| -> Vec<f64> {
        let mut v: Vec<f64> = q
            .describe(&f)
            .unwrap()
            .into_iter()
            .map(|(_, v)| v["producer_byte_rate"])
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let f = |c: Vec<(&str, Match)>, strict| Filter {
        components: c.into_iter().map(|(k, m)| (k.to_string(), m)).collect(),
        strict,
    };
    assert_eq!(values(f(vec![], false)), [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(values(f(vec![], true)), Vec::<f64>::new());
    let alice = || ("user", Match::Exact("alice".into()));
    assert_eq!(values(f(vec![alice()], false)), [1.0, 3.0]);
    assert_eq!(values(f(vec![alice()], true)), [1.0]);
    assert_eq!(values(f(vec![("user", Match::Default)], false)), [2.0]);
    assert_eq!(values(f(vec![("user", Match::Any)], true)), [1.0, 2.0]);
    assert_eq!(
        values(f(vec![("client-id", Match::Any)], false)),
        [3.0, 4.0]
    );
    let dup = f(vec![alice(), ("user", Match::Any)], false);
    assert!(q.describe(&dup).is_err());
    assert!(q.describe(&f(vec![("group", Match::Any)], false)).is_err());
}

#[test]
fn a_cancelled_alter_holds_the_write_lock_until_its_write_is_applied() {
    let q = quotas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..20 {
            let e = entity(&[("user", Some(&format!("u{i}")))]);
            let first = [Op::Set("producer_byte_rate".into(), 1000.0)];
            // Polled once: it takes the lock and starts its write, then its caller stops waiting.
            // (When it happens to finish within that poll, the check below holds trivially.)
            let _ =
                tokio::time::timeout(std::time::Duration::ZERO, q.alter(&e, &first, false)).await;
            // The next alter of the entity must build on the first once it is applied, not on
            // the table as it was (which lost the first key).
            let second = [Op::Set("consumer_byte_rate".into(), 2000.0)];
            q.alter(&e, &second, false).await.unwrap();
            let values = q.describe(&Filter::default()).unwrap();
            let (_, v) = values.iter().find(|(x, _)| *x == e).unwrap();
            assert_eq!(v.len(), 2, "user u{i}: {v:?}");
        }
    });
}
