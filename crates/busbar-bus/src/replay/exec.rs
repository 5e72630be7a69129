//! A replay run's task (`replay.rs` starts and stops it): the walk over the sources in time
//! slices, each event matched, paced, delivered with the subscription's retry policy or
//! dead-lettered, and the checkpoints of its place.

use super::*;

/// Cluster mode: whether the run's broker lost its subscription's lease. The run then ends here
/// handed over (stored as running; the next runner goes on with it) without waiting for the
/// tick to stop it, so two brokers never replay the same stretch for long.
fn handed_over(ctx: &Ctx, run: &Run) -> bool {
    if ctx.retries.may_write(&run.sub) {
        return false;
    }
    run.signal(RunState::Running, "handed over");
    // Given up for good, as the worker's watchdog does: a late renewal must not leave this
    // broker holding the lease with the run ended (the next take goes on with it).
    ctx.retries.give_up(&run.sub);
    true
}

/// The first slice's width; later ones shrink to about `rate` events or double while empty.
const SLICE_MS: i64 = 60_000;

/// How often a run waiting for its creator's READ looks again.
const GATE_WAIT: Duration = Duration::from_millis(200);

/// Runs `run` to its end (or until it is stopped), writing its progress every
/// [`CHECKPOINT_INTERVAL`] and how it ended. Writes happen here only, one after the other and
/// never cut short by a stop, so the last one written is the newest. A stop is seen by the work
/// itself between events, so what it delivered is in the record before the last write.
pub(super) async fn execute(
    ctx: Arc<Ctx>,
    sub: Arc<Compiled>,
    run: Arc<Run>,
    stop: watch::Receiver<End>,
    gate: Gate,
) {
    let mut seen = stop.clone();
    let work = replay_all(&ctx, &sub, &run, &mut seen, gate);
    tokio::pin!(work);
    let mut every = tokio::time::interval(CHECKPOINT_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut saved = run.record();
    let (state, error) = loop {
        tokio::select! {
            r = &mut work => break match r {
                Ok(true) => (RunState::Completed, None),
                Ok(false) => end_asked(&stop),
                Err(e) => (RunState::Failed, Some(e.to_string())),
            },
            _ = every.tick() => {}
        }
        let now = run.record();
        if now != saved {
            // A failed checkpoint costs repeated work after a crash, not the run.
            let _ = checkpoint(&ctx, &run).await;
            saved = now;
        }
    };
    {
        let mut r = run.lock();
        // Handed over (cluster mode, this broker closing): stored as running, from its place.
        if state != RunState::Running {
            r.state = state;
            r.error = error;
            r.ended_ms = Some(ctx.broker.config().clock.now_ms());
        }
        if state == RunState::Completed {
            r.replayed_to_ms = Some(r.to_ms);
        }
    }
    // Not written (a failing disk): the stored record shows the last checkpoint, and after a
    // restart the run reads `INTERRUPTED` from there; nothing is lost but repeated work. The
    // run's error says so while this process lives.
    let written = checkpoint(&ctx, &run).await;
    (run.end_written).store(written.is_ok(), std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = written {
        let mut r = run.lock();
        let why = format!(
            "its end could not be written ({e}); after a restart it shows its last checkpoint"
        );
        r.error = Some(match r.error.take() {
            Some(before) => format!("{before}; {why}"),
            None => why,
        });
    }
}

/// Refuses a run whose record could outgrow one internal row ([`RUN_RECORD_BYTES_MAX`]): one
/// cursor per source partition, each at most its partition's end.
pub(super) fn fits(ctx: &Ctx, sub: &Compiled, record: &RunRecord) -> Result<()> {
    let mut r = record.clone();
    for topic in &sub.spec.sources {
        let Ok((id, n)) = crate::positions::topic_layout(&ctx.broker, topic) else {
            continue;
        };
        for partition in 0..n {
            let end =
                (ctx.broker.offsets_of(topic, partition as i64)).map_or(u64::MAX, |(_, end)| end);
            let (topic, topic_id) = (topic.clone(), id.clone());
            r.cursors.push(Cursor {
                topic,
                topic_id,
                partition,
                next: end,
                limit: end,
            });
        }
    }
    r.counts = RunCounts {
        matched: u64::MAX,
        delivered: u64::MAX,
        retried: u64::MAX,
        dead_lettered: u64::MAX,
        dropped: u64::MAX,
        undecodable: u64::MAX,
        expired: u64::MAX,
    };
    r.error = Some("x".repeat(1024));
    r.replayed_to_ms = Some(i64::MAX);
    r.ended_ms = Some(i64::MAX);
    let len = crate::runrecord::encoded_len(&r);
    if len > RUN_RECORD_BYTES_MAX {
        let why = format!(
            "the run's record ({len} bytes: one place per source partition) would exceed \
             {RUN_RECORD_BYTES_MAX} bytes; replay fewer or shorter-named source topics"
        );
        return Err(invalid("name", why));
    }
    Ok(())
}

/// How the run was asked to end: as its stop says, or `INTERRUPTED` when its bus is gone.
fn end_asked(stop: &watch::Receiver<End>) -> (RunState, Option<String>) {
    let end = stop.borrow().clone();
    match end {
        Some((state, why)) => (state, (state != RunState::Cancelled).then_some(why)),
        None => (RunState::Interrupted, Some(interrupted())),
    }
}

/// Whether the run was asked to end (or its bus is gone).
fn ended(stop: &watch::Receiver<End>) -> bool {
    stop.borrow().is_some() || stop.has_changed().is_err()
}

/// Writes the run's record as it is now.
async fn checkpoint(ctx: &Ctx, run: &Run) -> Result<()> {
    let r = run.record();
    ctx.retries
        .put_runs(&run.sub, vec![(r.name.clone(), Some(r))])
        .await
}

/// Spaces deliveries `1/rate` s apart.
struct Pace {
    every: Duration,
    next: tokio::time::Instant,
    /// The subscription's creator must be allowed to READ its sources: the run waits while it may not.
    gate: Gate,
}

impl Pace {
    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = self.next.max(tokio::time::Instant::now()) + self.every;
    }
}

/// The run's place in each source partition: as stored for the topic incarnation of now, else
/// from the first event at or after `from` to the partition's end now.
fn cursors(ctx: &Ctx, sub: &Compiled, run: &Run) -> Result<Vec<Cursor>> {
    let r = run.record();
    let mut out = Vec::new();
    for topic in &sub.spec.sources {
        let (id, n) = crate::positions::topic_layout(&ctx.broker, topic)?;
        for partition in 0..n {
            let kept = (r.cursors.iter())
                .find(|c| c.topic == *topic && c.topic_id == id && c.partition == partition);
            let c = match kept {
                Some(c) => {
                    let mut c = c.clone();
                    let start = ctx.broker.offsets_of(topic, partition as i64)?.0;
                    expire(run, &mut c.next, start.min(c.limit));
                    c
                }
                None => Cursor {
                    topic: topic.clone(),
                    topic_id: id.clone(),
                    partition,
                    next: ctx
                        .broker
                        .offset_for_timestamp(topic, partition as i64, r.from_ms)?,
                    limit: ctx.broker.offsets_of(topic, partition as i64)?.1,
                },
            };
            out.push(c);
        }
    }
    Ok(out)
}

/// Cluster mode: every source partition's copy noted as read and caught up to the end this
/// broker heard of, before places are decided from it (a copy no one read lately is left
/// behind: a run taken over, or started, on such a broker would otherwise see only the copy's
/// stale end and wait there). Single-node mode: nothing to do.
async fn prepare_sources(ctx: &Ctx, sub: &Compiled) {
    for topic in &sub.spec.sources {
        let Ok((_, n)) = crate::positions::topic_layout(&ctx.broker, topic) else {
            continue;
        };
        for partition in 0..n {
            ctx.broker.prepare_read(topic, partition as i64).await;
        }
    }
}

/// Replays the run's range; `false` when it was stopped first.
async fn replay_all(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    stop: &mut watch::Receiver<End>,
    gate: Gate,
) -> Result<bool> {
    let (from, to, rate, resumed) = {
        let r = run.record();
        (r.from_ms, r.to_ms, r.rate.max(1), r.replayed_to_ms)
    };
    prepare_sources(ctx, sub).await;
    let mut parts = cursors(ctx, sub, run)?;
    run.lock().cursors = parts.clone();
    let mut pace = Pace {
        every: Duration::from_secs_f64(1.0 / f64::from(rate)),
        next: tokio::time::Instant::now(),
        gate,
    };
    let (mut t, mut width) = (resumed.unwrap_or(from).clamp(from, to), SLICE_MS);
    while t < to {
        prepare_sources(ctx, sub).await;
        let (end_t, ends) = next_slice(ctx, &parts, t, to, &mut width, u64::from(rate))?;
        for (i, end) in ends.into_iter().enumerate() {
            if !replay_range(
                ctx,
                sub,
                run,
                (parts.as_mut_slice(), i),
                end,
                &mut pace,
                stop,
            )
            .await?
            {
                return Ok(false);
            }
        }
        t = end_t;
        if t < to {
            run.lock().replayed_to_ms = Some(t);
        }
        tokio::task::yield_now().await;
    }
    // Past the first event stamped at or after `to`, events stamped inside the range may still
    // be stored (a producer sets any CreateTime): read on to what the run covers.
    for i in 0..parts.len() {
        let limit = parts[i].limit;
        if !replay_range(
            ctx,
            sub,
            run,
            (parts.as_mut_slice(), i),
            limit,
            &mut pace,
            stop,
        )
        .await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The next slice `[t, end)` and where it ends in each partition: at most about `events` offsets
/// in all (unless it is down to 1 ms), widened for the slice after when it is empty.
fn next_slice(
    ctx: &Ctx,
    parts: &[Cursor],
    t: i64,
    to: i64,
    width: &mut i64,
    events: u64,
) -> Result<(i64, Vec<u64>)> {
    loop {
        let end_t = t.saturating_add(*width).min(to);
        let mut ends = Vec::with_capacity(parts.len());
        for p in parts {
            let at = (ctx.broker).offset_for_timestamp(&p.topic, p.partition as i64, end_t)?;
            ends.push(at.min(p.limit).max(p.next));
        }
        let n: u64 = parts.iter().zip(&ends).map(|(p, e)| e - p.next).sum();
        if n > events && *width > 1 {
            *width /= 2;
            continue;
        }
        if n == 0 {
            *width = width.saturating_mul(2);
        }
        return Ok((end_t, ends));
    }
}

/// Replays offsets `[next, end)` of cursor `i`, moving it (and the run's record) past each event
/// done; `false` when the run was stopped first (the cursor is then at the first event not done).
async fn replay_range(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    (parts, i): (&mut [Cursor], usize),
    end: u64,
    pace: &mut Pace,
    stop: &mut watch::Receiver<End>,
) -> Result<bool> {
    let part = &mut parts[i];
    let key = (part.topic.clone(), part.topic_id.clone(), part.partition);
    let (from, to) = {
        let r = run.lock();
        (r.from_ms, r.to_ms)
    };
    let decoder = ctx.shared.decoder();
    let advance = |part: &mut Cursor, next: u64| {
        part.next = part.next.max(next);
        if let Some(c) = run.lock().cursors.get_mut(i) {
            c.next = part.next;
        }
    };
    'read: while part.next < end {
        if ended(stop) || handed_over(ctx, run) {
            return Ok(false);
        }
        let start = ctx.broker.offsets_of(&key.0, key.2 as i64)?.0;
        if part.next < start {
            let mut next = part.next;
            expire(run, &mut next, start.min(end));
            advance(part, next);
            continue;
        }
        // Cluster mode: a copy behind the place read first takes what the store holds (a
        // failure leaves it as it is: the read below finds nothing new and waits).
        let _ = (ctx.broker)
            .catch_up_for_read(&key.0, key.2 as i64, part.next)
            .await;
        let data = match read_pinned(&ctx.broker, &key, part.next, READ_BYTES).await {
            Ok(data) => data,
            // Deleted since the check above.
            Err(BrokerError::OffsetOutOfRange { start, .. }) if start > part.next => {
                let mut next = part.next;
                expire(run, &mut next, start.min(end));
                advance(part, next);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let Some(last) = busbar_broker::last_offset(&data) else {
            // Nothing readable below the end: an open transaction holds the last stable offset
            // here. Its events are not passed over: the run waits for it to end.
            if ctx.broker.last_stable_offset(&key.0, key.2 as i64)? <= part.next {
                tokio::select! {
                    _ = tokio::time::sleep(TXN_WAIT) => {}
                    _ = stop.wait_for(Option::is_some) => return Ok(false),
                }
                continue;
            }
            break;
        };
        let (topic, p) = (key.0.as_str(), key.2);
        for d in ctx.broker.decode_committed(topic, p, &data, part.next)? {
            let ev = match d {
                Decoded::Undecodable { first, .. } if first >= end => break 'read,
                // Set aside by the subscription itself (dead-lettered); counted here.
                Decoded::Undecodable { last, .. } => {
                    run.count(|c| c.undecodable += 1);
                    advance(part, last + 1);
                    continue;
                }
                Decoded::Event(ev) if ev.offset >= end => break 'read,
                Decoded::Event(ev) => ev,
            };
            if ev.timestamp >= from
                && ev.timestamp < to
                && request::matches(sub, &ev, decoder.as_ref())
            {
                if ended(stop) || handed_over(ctx, run) {
                    return Ok(false);
                }
                // Runs as the subscription's creator (`creator.rs`): waits while it may not read
                // the sources or write the target or dead-letter topic.
                while pace.gate.denied(&ctx.broker, &sub.spec).is_some() {
                    if handed_over(ctx, run) {
                        return Ok(false);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(GATE_WAIT) => {}
                        _ = stop.wait_for(Option::is_some) => return Ok(false),
                    }
                }
                tokio::select! {
                    _ = pace.wait() => {}
                    _ = stop.wait_for(Option::is_some) => return Ok(false),
                }
                if handed_over(ctx, run) {
                    return Ok(false);
                }
                if !deliver_one(ctx, sub, run, &ev, stop).await? {
                    return Ok(false);
                }
                run.count(|c| c.matched += 1);
            }
            advance(part, ev.offset + 1);
        }
        advance(part, (last + 1).min(end));
    }
    // Past the data read: what is left of the stretch holds no event (or is gone from the log).
    advance(part, end);
    Ok(true)
}

/// How often a replay held at an open transaction looks again.
const TXN_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Moves a place `next` below the log's start up to `start`, counting the events it skips as
/// `expired` (gone before the run reached them).
fn expire(run: &Run, next: &mut u64, start: u64) {
    if *next < start {
        let gone = start - *next;
        run.count(|c| c.expired += gone);
        *next = start;
    }
}

/// Delivers `ev` (with retries), or dead-letters it; an error when its dead letter cannot be
/// written, which ends the run `FAILED` (an event neither delivered nor dead-lettered); `false`
/// when the run is stopped while it waits to try again (the event is not done).
async fn deliver_one(
    ctx: &Ctx,
    sub: &Compiled,
    run: &Run,
    ev: &event::StoredEvent,
    stop: &mut watch::Receiver<End>,
) -> Result<bool> {
    let policy = &sub.spec.delivery;
    let clock = ctx.broker.config().clock.clone();
    let first = clock.now_ms();
    let mut jitter = crate::policy::Jitter::from_entropy();
    let name = run.record().name;
    let decoder = ctx.shared.decoder();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let via = request::Via {
            broker: &ctx.broker,
            http: &ctx.http,
            sink: None,
            decoder: decoder.as_ref(),
            attempt: attempts,
        };
        let outcome = request::attempt(via, sub, ev, Some(&name)).await;
        let (failure, why) = match outcome {
            Outcome::Delivered => {
                run.count(|c| c.delivered += 1);
                return Ok(true);
            }
            Outcome::Fatal(f) => (f, "non_retriable"),
            Outcome::Retry {
                failure,
                retry_after_ms,
            } => {
                let now = clock.now_ms();
                match verdict(policy, attempts, first, now, retry_after_ms, &mut jitter) {
                    Verdict::Exhausted(why) => (failure, why),
                    Verdict::RetryIn(delay) => {
                        run.count(|c| c.retried += 1);
                        let wait = tokio::time::sleep(Duration::from_millis(delay as u64));
                        tokio::select! {
                            _ = wait => {}
                            _ = stop.wait_for(Option::is_some) => return Ok(false),
                        }
                        if handed_over(ctx, run) {
                            return Ok(false);
                        }
                        continue;
                    }
                }
            }
        };
        let Some(topic) = &sub.spec.dead_letter_topic else {
            run.count(|c| c.dropped += 1);
            return Ok(true);
        };
        let letter = dlq::letter(sub, ev, &failure, why, attempts, first, clock.now_ms());
        let mut span = dlq::span(sub, ev, &failure, why, topic);
        ctx.broker.publish(topic, vec![letter]).await.map_err(|e| {
            span.fail(e.to_string());
            BusError::Storage(format!(
                "dead letter of {}/{}@{} to {topic:?}: {e}",
                ev.topic, ev.partition, ev.offset
            ))
        })?;
        run.count(|c| c.dead_lettered += 1);
        return Ok(true);
    }
}
