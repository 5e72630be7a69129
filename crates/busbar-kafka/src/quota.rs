//! Client quotas on the Kafka protocol (KIP-219): each request is measured against the quotas of
//! its user (the authenticated principal, `ANONYMOUS` without one) and client id
//! (`busbar_broker::quota`): Produce request bytes against `producer_byte_rate`, Fetch answer bytes
//! against `consumer_byte_rate`, and every request's handling time against `request_percentage`.
//! Over a quota, the answer goes out at once carrying `throttle_time_ms` (the larger of the byte
//! and the time throttle; every response type that has the field), a throttled Fetch carries no
//! data, and the connection then takes no request for that long (mute). A client too old to wait
//! by itself (Produce below v6, Fetch below v8, each API below its KIP-219 version) gets its
//! answer that much later instead.
//!
//! Request time is the wall time busbar spends handling a request; a Fetch's wait for data
//! (`max_wait_ms`), a JoinGroup's or SyncGroup's wait for the rebalance and a Produce's wait for
//! its fsync are not counted, as Kafka counts none (its request time is request-thread time).

use crate::api::Ctx;
use busbar_broker::auth::acl::ANONYMOUS;
use busbar_broker::quota::Kind;
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ResponseKind};
use kafka_protocol::protocol::Encodable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The user a request is measured as.
pub fn user<'a>(ctx: &Ctx<'a>) -> &'a str {
    ctx.principal.unwrap_or(ANONYMOUS)
}

/// How long a connection takes no request (KIP-219's channel mute).
pub struct Mute {
    base: Instant,
    /// Milliseconds after `base`; 0 when never muted.
    until: AtomicU64,
}

impl Default for Mute {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }
}

impl Mute {
    /// Mutes for `ms` from now (never shortening a longer mute).
    pub fn extend(&self, ms: u64) {
        if ms > 0 {
            let until = self.base.elapsed().as_millis() as u64 + ms;
            self.until.fetch_max(until, Ordering::AcqRel);
        }
    }

    /// When the mute ends, while it lasts.
    pub fn deadline(&self) -> Option<Instant> {
        let until = self.base + Duration::from_millis(self.until.load(Ordering::Acquire));
        (until > Instant::now()).then_some(until)
    }

    /// Waits out the mute, if any.
    pub async fn wait(&self) {
        if let Some(d) = self.deadline() {
            tokio::time::sleep_until(d).await;
        }
    }
}

/// Records a Produce request of `bytes`; answers the throttle, milliseconds.
pub fn produce(ctx: &Ctx<'_>, bytes: usize) -> u64 {
    let q = ctx.shared.broker.quotas();
    q.record(user(ctx), &ctx.client_id, Kind::Produce, bytes as f64, true)
}

/// Lowers a Fetch's `max_bytes` to what the consumer quota allows in its windows (Kafka's
/// `getMaxValueInQuotaWindow`), so one answer cannot exceed the quota for long.
pub fn cap_fetch(ctx: &Ctx<'_>, req: &mut FetchRequest) {
    let q = ctx.shared.broker.quotas();
    if let Some(most) = q.fetch_bytes_max(user(ctx), &ctx.client_id) {
        req.max_bytes = req.max_bytes.min(most.min(i32::MAX as usize) as i32);
    }
}

/// Records a Fetch answer's bytes; over the quota the bytes are not counted and the answer is
/// emptied (no data, as Kafka's throttled fetch). Answers the throttle, milliseconds.
pub fn fetch(ctx: &Ctx<'_>, resp: &mut FetchResponse) -> u64 {
    let q = ctx.shared.broker.quotas();
    if !q.any() {
        return 0;
    }
    let bytes = resp.compute_size(ctx.version).unwrap_or(0);
    let ms = q.record(user(ctx), &ctx.client_id, Kind::Fetch, bytes as f64, false);
    if ms > 0 {
        resp.responses.clear();
        resp.error_code = 0;
    }
    ms
}

/// Whether a request's wall time is mostly a wait for others, not work: JoinGroup and SyncGroup
/// wait for the rebalance (`group.initial.rebalance.delay`, the other members), as a Fetch waits
/// for data. Kafka parks them in purgatory, off the request threads its quota measures; their
/// own work is a few microseconds, so busbar counts none of their time.
fn waits(key: ApiKey) -> bool {
    matches!(key, ApiKey::JoinGroup | ApiKey::SyncGroup | ApiKey::Fetch)
}

/// Records `elapsed` handling time of a request (percent-seconds of one thread); answers the
/// throttle, milliseconds. The SASL exchange, ApiVersions and the waiting APIs ([`waits`]) are
/// not measured.
pub fn request_time(ctx: &Ctx<'_>, key: ApiKey, elapsed: Duration) -> u64 {
    if waits(key)
        || matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        return 0;
    }
    let q = ctx.shared.broker.quotas();
    let percent_seconds = elapsed.as_secs_f64() * 100.0;
    q.record(
        user(ctx),
        &ctx.client_id,
        Kind::Request,
        percent_seconds,
        true,
    )
}

/// Whether a client of `key` at `version` waits out `throttle_time_ms` itself (KIP-219 bumped
/// each API's version when clients started to); an older one is throttled by a late answer.
pub fn client_throttles(key: ApiKey, version: i16) -> bool {
    let from = match key {
        ApiKey::Produce => 6,
        ApiKey::Fetch => 8,
        ApiKey::ListOffsets => 3,
        ApiKey::Metadata => 6,
        ApiKey::OffsetCommit | ApiKey::OffsetFetch => 4,
        ApiKey::FindCoordinator
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::SyncGroup
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::ApiVersions
        | ApiKey::DeleteTopics
        | ApiKey::DescribeConfigs
        | ApiKey::DescribeAcls
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls => 2,
        ApiKey::JoinGroup | ApiKey::CreateTopics | ApiKey::OffsetForLeaderEpoch => 3,
        ApiKey::DeleteRecords
        | ApiKey::InitProducerId
        | ApiKey::AlterConfigs
        | ApiKey::DescribeLogDirs
        | ApiKey::CreatePartitions
        | ApiKey::DeleteGroups => 1,
        _ => 0,
    };
    version >= from
}

/// Sets `throttle_time_ms` on every response type that has it (the encoder leaves it out of
/// versions without the field).
pub fn set_throttle(resp: &mut ResponseKind, ms: u64) {
    let ms = ms.min(i32::MAX as u64) as i32;
    let field = match resp {
        ResponseKind::Produce(r) => &mut r.throttle_time_ms,
        ResponseKind::Fetch(r) => &mut r.throttle_time_ms,
        ResponseKind::ListOffsets(r) => &mut r.throttle_time_ms,
        ResponseKind::Metadata(r) => &mut r.throttle_time_ms,
        ResponseKind::OffsetCommit(r) => &mut r.throttle_time_ms,
        ResponseKind::OffsetFetch(r) => &mut r.throttle_time_ms,
        ResponseKind::FindCoordinator(r) => &mut r.throttle_time_ms,
        ResponseKind::JoinGroup(r) => &mut r.throttle_time_ms,
        ResponseKind::Heartbeat(r) => &mut r.throttle_time_ms,
        ResponseKind::LeaveGroup(r) => &mut r.throttle_time_ms,
        ResponseKind::SyncGroup(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeGroups(r) => &mut r.throttle_time_ms,
        ResponseKind::ListGroups(r) => &mut r.throttle_time_ms,
        ResponseKind::ApiVersions(r) => &mut r.throttle_time_ms,
        ResponseKind::CreateTopics(r) => &mut r.throttle_time_ms,
        ResponseKind::DeleteTopics(r) => &mut r.throttle_time_ms,
        ResponseKind::DeleteRecords(r) => &mut r.throttle_time_ms,
        ResponseKind::InitProducerId(r) => &mut r.throttle_time_ms,
        ResponseKind::OffsetForLeaderEpoch(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeAcls(r) => &mut r.throttle_time_ms,
        ResponseKind::CreateAcls(r) => &mut r.throttle_time_ms,
        ResponseKind::DeleteAcls(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeConfigs(r) => &mut r.throttle_time_ms,
        ResponseKind::AlterConfigs(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeLogDirs(r) => &mut r.throttle_time_ms,
        ResponseKind::CreatePartitions(r) => &mut r.throttle_time_ms,
        ResponseKind::DeleteGroups(r) => &mut r.throttle_time_ms,
        ResponseKind::IncrementalAlterConfigs(r) => &mut r.throttle_time_ms,
        ResponseKind::OffsetDelete(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeCluster(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeClientQuotas(r) => &mut r.throttle_time_ms,
        ResponseKind::AlterClientQuotas(r) => &mut r.throttle_time_ms,
        ResponseKind::DescribeUserScramCredentials(r) => &mut r.throttle_time_ms,
        ResponseKind::AlterUserScramCredentials(r) => &mut r.throttle_time_ms,
        _ => return,
    };
    *field = (*field).max(ms);
}

/// After a request other than Produce was handled (`elapsed` its handling time, `bytes_ms` its
/// byte throttle): records its time, sets `throttle_time_ms`, mutes, and answers how long to hold
/// the answer back (non-zero only for a client that does not wait by itself).
pub fn finish(
    ctx: &Ctx<'_>,
    key: ApiKey,
    resp: &mut ResponseKind,
    elapsed: Duration,
    bytes_ms: u64,
    mute: &Mute,
) -> Duration {
    if !ctx.shared.broker.quotas().any() {
        return Duration::ZERO;
    }
    let ms = bytes_ms.max(request_time(ctx, key, elapsed));
    if ms == 0 {
        return Duration::ZERO;
    }
    set_throttle(resp, ms);
    mute.extend(ms);
    hold(key, ctx.version, ms)
}

/// How long to hold back an answer throttled `ms`: only for a client that does not wait itself.
fn hold(key: ApiKey, version: i16, ms: u64) -> Duration {
    if client_throttles(key, version) {
        Duration::ZERO
    } else {
        Duration::from_millis(ms)
    }
}

/// After a Produce request of `bytes` was started (`elapsed` its handling time): records it,
/// mutes, and answers the throttle (ms, for `throttle_time_ms`) and how long to hold the answer.
pub fn produced(ctx: &Ctx<'_>, bytes: usize, elapsed: Duration, mute: &Mute) -> (u64, Duration) {
    if !ctx.shared.broker.quotas().any() {
        return (0, Duration::ZERO);
    }
    let ms = produce(ctx, bytes).max(request_time(ctx, ApiKey::Produce, elapsed));
    mute.extend(ms);
    (ms, hold(ApiKey::Produce, ctx.version, ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataResponse, ProduceResponse};

    #[test]
    fn throttle_is_set_on_responses_that_have_it_and_kept_at_the_larger() {
        let mut r = ResponseKind::Metadata(MetadataResponse::default());
        set_throttle(&mut r, 250);
        set_throttle(&mut r, 100);
        let ResponseKind::Metadata(m) = &r else {
            unreachable!()
        };
        assert_eq!(m.throttle_time_ms, 250);
        let mut p = ResponseKind::Produce(ProduceResponse::default());
        set_throttle(&mut p, u64::MAX);
        let ResponseKind::Produce(p) = &p else {
            unreachable!()
        };
        assert_eq!(p.throttle_time_ms, i32::MAX);
    }

    #[test]
    fn old_produce_and_fetch_clients_do_not_throttle_themselves() {
        assert!(!client_throttles(ApiKey::Produce, 5));
        assert!(client_throttles(ApiKey::Produce, 6));
        assert!(!client_throttles(ApiKey::Fetch, 7));
        assert!(client_throttles(ApiKey::Fetch, 8));
        assert!(client_throttles(ApiKey::DescribeClientQuotas, 0));
    }

    #[tokio::test]
    async fn a_mute_lasts_its_longest_extension() {
        let m = Mute::default();
        assert!(m.deadline().is_none());
        m.extend(300);
        m.extend(50);
        let start = Instant::now();
        m.wait().await;
        let waited = start.elapsed().as_millis();
        assert!((290..1000).contains(&waited), "{waited}");
        assert!(m.deadline().is_none());
    }
}
