//! The transaction coordinator through the broker's API (issue 18): a transaction prepared
//! before a crash (its markers failed: full disk) is completed after the restart, for commit and
//! for abort, with the aborted index durable; the produce checks (48 for a partition not added or a
//! plain batch inside a transaction, 47 for a fenced epoch); EndTxn retries and out-of-turn calls;
//! the coordinator's timeout aborting and fencing (injected clock); InitProducerId's limits.

mod common;

use busbar_broker::datadir::{FaultDataDir, MemDataDir};
use busbar_broker::txn::TxnState;
use busbar_broker::{Broker, BrokerConfig, BrokerError, Isolation, ManualClock};
use busbar_log::batch::{self, BatchHeader};
use busbar_log::disk::MemFs;
use std::sync::Arc;

fn config(dir: Arc<dyn busbar_broker::datadir::DataDir>) -> BrokerConfig {
    BrokerConfig {
        data: Some(dir),
        ..Default::default()
    }
}

/// A transactional batch of `pid` at `epoch` and sequence `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let plain = common::idempotent(pid, epoch, seq);
    let h = BatchHeader::parse(&plain).unwrap();
    batch::assemble(
        &BatchHeader {
            attributes: 0x10,
            ..h
        },
        &plain[batch::HEADER_BYTES..],
    )
}

async fn started(b: &Broker, id: &str) -> (i64, i16) {
    let (pid, epoch) = b.init_transactional(id, 60_000, None).await.unwrap();
    let added = b
        .add_partitions_to_txn(id, pid, epoch, vec![("t".into(), 0)])
        .await
        .unwrap();
    assert!(added.iter().all(|(_, _, e)| e.is_none()), "{added:?}");
    b.produce("t", 0, txn_batch(pid, epoch, 0)).await.unwrap();
    (pid, epoch)
}

fn state(b: &Broker, id: &str) -> TxnState {
    b.transactions()
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, t)| t.state)
        .unwrap()
}

/// Prepares a transaction whose markers cannot be written, crashes, restarts: the new broker
/// holds the last stable offset at the transaction until its timer completes it.
async fn prepared_then_crashed(commit: bool) -> (Broker, i64) {
    let fs = MemFs::new();
    let faulty = Arc::new(FaultDataDir::new(fs.clone(), &["topics/t"]));
    let b = Broker::open(config(faulty.clone())).unwrap();
    b.create_topic("t", Some(1), Default::default())
        .await
        .unwrap();
    let (pid, epoch) = started(&b, "x").await;
    assert_eq!(b.last_stable_offset("t", 0).unwrap(), 0);
    faulty.plan("topics/t/0").unwrap().set_disk_full(true);
    let ended = b.end_txn("x", pid, epoch, commit).await;
    assert!(ended.is_err(), "the marker could not be written: {ended:?}");
    let prepared = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    assert_eq!(state(&b, "x"), prepared);
    fs.crash(None);
    drop(b);
    let b = Broker::open(config(Arc::new(MemDataDir::new(fs)))).unwrap();
    assert_eq!(state(&b, "x"), prepared);
    assert_eq!(
        b.last_stable_offset("t", 0).unwrap(),
        0,
        "held at the prepared one"
    );
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert!(r.data.is_empty());
    b.tick_transactions().await;
    (b, pid)
}

#[tokio::test]
async fn a_commit_prepared_before_a_crash_completes_after_the_restart() {
    let (b, _) = prepared_then_crashed(true).await;
    assert_eq!(state(&b, "x"), TxnState::CompleteCommit);
    assert_eq!(
        b.last_stable_offset("t", 0).unwrap(),
        2,
        "the batch and its marker"
    );
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert!(r.aborted.is_empty());
    let events = b
        .read_events("t", 0, 0, 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the committed event, not the marker");
}

#[tokio::test]
async fn an_abort_prepared_before_a_crash_completes_and_its_index_is_durable() {
    let (b, pid) = prepared_then_crashed(false).await;
    assert_eq!(state(&b, "x"), TxnState::CompleteAbort);
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(r.last_stable, 2);
    assert_eq!(
        r.aborted
            .iter()
            .map(|a| (a.producer_id, a.first))
            .collect::<Vec<_>>(),
        vec![(pid, 0)]
    );
    let events = b
        .read_events("t", 0, 0, 10, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(
        events.is_empty(),
        "an aborted event is never shown: {events:?}"
    );
    // The aborted index survives a clean restart too.
    let fs_dir = b.config().data.clone().unwrap();
    b.close().unwrap();
    drop(b);
    let b = Broker::open(config(fs_dir)).unwrap();
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(r.aborted.len(), 1);
}

async fn broker_with_topic() -> Broker {
    let b = Broker::open(config(Arc::new(MemDataDir::new(MemFs::new())))).unwrap();
    b.create_topic("t", Some(2), Default::default())
        .await
        .unwrap();
    b
}

#[tokio::test]
async fn produce_checks_the_producers_transaction() {
    let b = broker_with_topic().await;
    let (pid, epoch) = started(&b, "x").await;
    // Partition 1 did not join the transaction.
    let e = b
        .produce("t", 1, txn_batch(pid, epoch, 0))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidTxnState(_)), "{e}");
    // A plain batch from a producer inside a transaction.
    let e = b
        .produce("t", 0, common::idempotent(pid, epoch, 1))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidTxnState(_)), "{e}");
    // A new producer with the id fences the old epoch.
    let (pid2, epoch2) = b.init_transactional("x", 60_000, None).await.unwrap();
    assert_eq!((pid2, epoch2), (pid, epoch + 1));
    let e = b
        .produce("t", 0, txn_batch(pid, epoch, 1))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidProducerEpoch(_)), "{e}");
    // The open transaction of the old epoch was aborted by the new InitProducerId.
    assert_eq!(state(&b, "x"), TxnState::Empty);
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(r.aborted.len(), 1);
}

#[tokio::test]
async fn end_txn_retries_succeed_and_out_of_turn_calls_are_refused() {
    let b = broker_with_topic().await;
    let (pid, epoch) = started(&b, "x").await;
    b.end_txn("x", pid, epoch, true).await.unwrap();
    b.end_txn("x", pid, epoch, true).await.unwrap(); // a retry of the same outcome
    let e = b.end_txn("x", pid, epoch, false).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidTxnState(_)), "{e}");
    let e = b.end_txn("x", pid + 1, epoch, true).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidProducerIdMapping(_)), "{e}");
    let e = b.end_txn("nobody", pid, epoch, true).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidProducerIdMapping(_)), "{e}");
    b.init_transactional("x", 60_000, None).await.unwrap();
    let e = b.end_txn("x", pid, epoch, true).await.unwrap_err();
    assert!(matches!(e, BrokerError::ProducerFenced(_)), "{e}");
    // TxnOffsetCommit needs the group in the transaction.
    let e = b
        .txn_offset_commit("x", "g", pid, epoch + 1, None, vec![])
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidTxnState(_)), "{e}");
}

/// A broker on `dir` with the injected clock and a topic "t" of one partition.
async fn timed(clock: Arc<ManualClock>, dir: Arc<dyn busbar_broker::datadir::DataDir>) -> Broker {
    let b = Broker::open(BrokerConfig {
        data: Some(dir),
        clock,
        ..Default::default()
    })
    .unwrap();
    b.create_topic("t", Some(1), Default::default())
        .await
        .unwrap();
    b
}

/// Transactional id "x" with a 5 s timeout and an open transaction holding one batch on t-0;
/// answers its producer id (epoch 0).
async fn open_for_5s(b: &Broker) -> i64 {
    let (pid, _) = b.init_transactional("x", 5_000, None).await.unwrap();
    b.add_partitions_to_txn("x", pid, 0, vec![("t".into(), 0)])
        .await
        .unwrap();
    b.produce("t", 0, txn_batch(pid, 0, 0)).await.unwrap();
    pid
}

#[tokio::test]
async fn the_timer_aborts_a_transaction_past_its_timeout_and_fences_its_producer() {
    let clock = ManualClock::new(1_000_000);
    let b = timed(clock.clone(), Arc::new(MemDataDir::new(MemFs::new()))).await;
    let pid = open_for_5s(&b).await;
    b.tick_transactions().await;
    assert_eq!(state(&b, "x"), TxnState::Ongoing, "not yet timed out");
    clock.advance(5_001);
    b.tick_transactions().await;
    assert_eq!(state(&b, "x"), TxnState::CompleteAbort);
    let e = b.end_txn("x", pid, 0, true).await.unwrap_err();
    assert!(matches!(e, BrokerError::ProducerFenced(_)), "{e}");
    assert_eq!(b.last_stable_offset("t", 0).unwrap(), 2);
    // An idle id is forgotten after transactional_id_expiration_ms.
    clock.advance(b.config().transactions.id_expiration_ms + 1);
    b.tick_transactions().await;
    assert!(b.transactions().is_empty());
}

#[tokio::test]
async fn init_producer_id_checks_the_timeout_and_the_id_limit() {
    let mut cfg = config(Arc::new(MemDataDir::new(MemFs::new())));
    cfg.transactions.ids_max = 2;
    let b = Broker::open(cfg).unwrap();
    let e = b.init_transactional("x", 900_001, None).await.unwrap_err();
    assert!(
        matches!(e, BrokerError::InvalidTransactionTimeout(_)),
        "{e}"
    );
    let e = b.init_transactional("x", 0, None).await.unwrap_err();
    assert!(
        matches!(e, BrokerError::InvalidTransactionTimeout(_)),
        "{e}"
    );
    let e = b.init_transactional("", 1000, None).await.unwrap_err();
    assert!(matches!(e, BrokerError::InvalidRequest(_)), "{e}");
    b.init_transactional("a", 1000, None).await.unwrap();
    b.init_transactional("b", 1000, None).await.unwrap();
    let e = b.init_transactional("c", 1000, None).await.unwrap_err();
    assert!(matches!(e, BrokerError::TooManyTransactions(_)), "{e}");
    // A known id is not a new one.
    b.init_transactional("a", 1000, None).await.unwrap();
}

#[tokio::test]
async fn a_transaction_that_would_outgrow_its_record_is_refused_and_still_completes() {
    let b = broker_with_topic().await;
    let (pid, epoch) = started(&b, "x").await;
    b.create_topic("big", Some(300), Default::default())
        .await
        .unwrap();
    b.add_offsets_to_txn("x", pid, epoch, "g").await.unwrap();
    // 300 offsets with 4,000 bytes of metadata each: past the record limit (900 KiB).
    let offsets: Vec<_> = (0..300)
        .map(|i| ("big".to_string(), i, i64::from(i), "m".repeat(4000)))
        .collect();
    let e = b
        .txn_offset_commit("x", "g", pid, epoch, None, offsets)
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidRequest(_)), "{e}");
    // Nothing was staged, and the transaction commits.
    assert!(b.pending_txn_offsets("g").is_empty());
    b.end_txn("x", pid, epoch, true).await.unwrap();
    assert_eq!(state(&b, "x"), TxnState::CompleteCommit);
}

#[tokio::test]
async fn a_topic_created_again_mid_transaction_is_another_partition() {
    let b = broker_with_topic().await;
    let (pid, epoch) = started(&b, "x").await;
    b.delete_topic("t").await.unwrap();
    b.create_topic("t", Some(2), Default::default())
        .await
        .unwrap();
    // The new t-0 did not join the transaction (the old one did).
    let e = b
        .produce("t", 0, txn_batch(pid, epoch, 1))
        .await
        .unwrap_err();
    assert!(matches!(e, BrokerError::InvalidTxnState(_)), "{e}");
    let added = b
        .add_partitions_to_txn("x", pid, epoch, vec![("t".into(), 0)])
        .await
        .unwrap();
    assert!(added.iter().all(|(_, _, e)| e.is_none()), "{added:?}");
    assert_eq!(b.last_stable_offset("t", 0).unwrap(), 0);
    b.produce("t", 0, txn_batch(pid, epoch, 1)).await.unwrap();
    b.end_txn("x", pid, epoch, false).await.unwrap();
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(r.last_stable, 2, "the batch and its marker");
    assert_eq!(r.aborted.len(), 1);
}

#[tokio::test]
async fn a_timed_out_transaction_whose_abort_failed_is_still_fenced_when_it_completes() {
    let clock = ManualClock::new(1_000_000);
    let faulty = Arc::new(FaultDataDir::new(MemFs::new(), &["topics/t"]));
    let b = timed(clock.clone(), faulty.clone()).await;
    let pid = open_for_5s(&b).await;
    clock.advance(5_001);
    faulty.plan("topics/t/0").unwrap().set_disk_full(true);
    b.tick_transactions().await;
    assert_eq!(state(&b, "x"), TxnState::PrepareAbort, "the marker failed");
    faulty.plan("topics/t/0").unwrap().set_disk_full(false);
    b.tick_transactions().await;
    assert_eq!(state(&b, "x"), TxnState::CompleteAbort);
    let e = b.end_txn("x", pid, 0, true).await.unwrap_err();
    assert!(matches!(e, BrokerError::ProducerFenced(_)), "{e}");
    let (_, epoch) = b.init_transactional("x", 5_000, None).await.unwrap();
    assert_eq!(epoch, 2, "fenced once by the timeout, once by this init");
}

#[tokio::test]
async fn a_marker_is_durable_even_on_a_topic_that_never_syncs() {
    let fs = MemFs::new();
    let b = Broker::open(config(Arc::new(MemDataDir::new(fs.clone())))).unwrap();
    let never = [("sync.policy".to_string(), "never".to_string())];
    b.create_topic("t", Some(1), never.into_iter().collect())
        .await
        .unwrap();
    let (pid, epoch) = started(&b, "x").await;
    b.end_txn("x", pid, epoch, false).await.unwrap();
    fs.crash(None);
    drop(b);
    let b = Broker::open(config(Arc::new(MemDataDir::new(fs)))).unwrap();
    // The batch (never synced on its own) went to disk with the marker, which is there.
    let r = b
        .read_isolated("t", 0, 0, 1 << 20, Isolation::ReadCommitted)
        .unwrap();
    assert_eq!(r.last_stable, 2);
    assert_eq!(r.aborted.len(), 1);
}
