//! Work asked of the broker that runs a subscription, in cluster mode (`docs/cluster.md`
//! "Replay and redrive"). Only the holder of a subscription's lease writes its state, so a
//! replay started or cancelled, or letters redriven, on another broker are asked of the holder
//! through the shared store ([`SharedBus::ask`]); the holder serves the asks of the
//! subscriptions it runs when one is announced, and on each [`crate::cluster::TICK`] for any
//! announcement lost ([`Bus::serve_asks`]), with the same code a single node runs, and its
//! answer (or error) goes back to the broker that was asked.
//!
//! An ask no broker takes within [`ASK_WAIT`] is withdrawn and answered 503 `not_coordinator`
//! with nothing done: the subscription is moving to another broker (its runner died), or no
//! broker can run it.
//!
//! [`SharedBus::ask`]: crate::cluster::SharedBus::ask

use crate::error::{BusError, Result};
use crate::runs::{ReplaySpec, RunRecord};
use crate::Bus;
use busbar_broker::BrokerError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long an ask waits for the subscription's runner to take it: longer than a lease takes
/// to move to another broker when its runner dies (expiry, then a tick).
pub const ASK_WAIT: Duration = Duration::from_secs(20);
/// Most asks a broker serves in one tick (the rest wait for the next).
const ASKS_PER_TICK: u32 = 16;
/// Asks older than this are not taken: their asker is about to withdraw them ([`ASK_WAIT`]).
const ASK_FRESH: Duration = Duration::from_secs(ASK_WAIT.as_secs() - 2);

/// What one broker asks of the broker running a subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Ask {
    /// Start (or resume) a replay run.
    Replay {
        name: String,
        from: String,
        to: String,
        rate: u32,
    },
    /// Cancel a replay run.
    Cancel { run: String },
    /// Redrive these letters (partition, offset) of one incarnation of a dead-letter topic.
    Redrive {
        topic: String,
        topic_id: String,
        letters: Vec<(u32, u64)>,
        force: bool,
    },
}

/// The answer to an [`Ask`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer {
    /// The run's record after a replay or cancel.
    Run(RunRecord),
    /// What a redrive did: letters redriven, letters skipped (redriven before).
    Redriven {
        redriven: usize,
        skipped: usize,
    },
    Failed(Failure),
}

/// An error, as it travels between brokers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Failure {
    Invalid { path: String, reason: String },
    UnknownSubscription(String),
    UnknownReplay(String),
    Policy(String),
    BadRequest(String),
    UnknownTopic(String),
    NotCoordinator(String),
    Storage(String),
}

impl From<BusError> for Failure {
    fn from(e: BusError) -> Self {
        match e {
            BusError::InvalidSubscription { path, reason } => Failure::Invalid { path, reason },
            BusError::UnknownSubscription(n) => Failure::UnknownSubscription(n),
            BusError::UnknownReplay(n) => Failure::UnknownReplay(n),
            BusError::Broker(BrokerError::PolicyViolation(m)) => Failure::Policy(m),
            BusError::Broker(BrokerError::InvalidRequest(m)) => Failure::BadRequest(m),
            BusError::Broker(BrokerError::UnknownTopic(t)) => Failure::UnknownTopic(t),
            BusError::Broker(BrokerError::NotCoordinator(m)) => Failure::NotCoordinator(m),
            e => Failure::Storage(e.to_string()),
        }
    }
}

impl From<Failure> for BusError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Invalid { path, reason } => BusError::InvalidSubscription { path, reason },
            Failure::UnknownSubscription(n) => BusError::UnknownSubscription(n),
            Failure::UnknownReplay(n) => BusError::UnknownReplay(n),
            Failure::Policy(m) => BusError::Broker(BrokerError::PolicyViolation(m)),
            Failure::BadRequest(m) => BusError::Broker(BrokerError::InvalidRequest(m)),
            Failure::UnknownTopic(t) => BusError::Broker(BrokerError::UnknownTopic(t)),
            Failure::NotCoordinator(m) => BusError::Broker(BrokerError::NotCoordinator(m)),
            Failure::Storage(m) => BusError::Storage(m),
        }
    }
}

/// The error for a subscription whose worker is not running here (any more).
pub(crate) fn moved(name: &str) -> BusError {
    BusError::Broker(BrokerError::NotCoordinator(format!(
        "subscription {name:?} is moving between brokers; nothing was done, try again"
    )))
}

fn unexpected(answer: &Answer) -> BusError {
    BusError::Storage(format!("unexpected answer from another broker: {answer:?}"))
}

impl Bus {
    /// Asks the broker running subscription `name` to do `ask`: its answer (an error it gave
    /// comes back as that error).
    pub(crate) async fn ask(&self, name: &str, ask: &Ask) -> Result<Answer> {
        let shared = self.shared().expect("cluster mode");
        let body = serde_json::to_vec(ask).expect("an ask encodes");
        let Some(bytes) = shared.ask(name, body, ASK_WAIT).await? else {
            return Err(BusError::Broker(BrokerError::NotCoordinator(format!(
                "no broker took the request for subscription {name:?} within {ASK_WAIT:?} (it \
                 is moving to another broker, or none can run it); nothing was done, try again"
            ))));
        };
        match serde_json::from_slice::<Answer>(&bytes) {
            Ok(Answer::Failed(f)) => Err(f.into()),
            Ok(answer) => Ok(answer),
            Err(e) => Err(BusError::Storage(format!(
                "the answer from the broker running subscription {name:?} cannot be read: {e}"
            ))),
        }
    }

    /// [`Bus::ask`] for a replay run's record.
    pub(crate) async fn ask_run(&self, name: &str, ask: &Ask) -> Result<RunRecord> {
        match self.ask(name, ask).await? {
            Answer::Run(r) => Ok(r),
            other => Err(unexpected(&other)),
        }
    }

    /// [`Bus::ask`] for a redrive: (redriven, skipped).
    pub(crate) async fn ask_redrive(&self, name: &str, ask: &Ask) -> Result<(usize, usize)> {
        match self.ask(name, ask).await? {
            Answer::Redriven { redriven, skipped } => Ok((redriven, skipped)),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether subscription `name`'s worker runs on this broker (under its lease).
    pub(crate) async fn runs_here(&self, name: &str) -> bool {
        let held = self.shared().is_some_and(|s| s.holds(name));
        held && (self.subs.lock().await.get(name)).is_some_and(|e| e.handle.is_some())
    }

    /// Serves the asks of the subscriptions whose workers run here.
    pub(crate) async fn serve_asks(&self) -> Result<()> {
        let shared = self.shared().expect("cluster mode").clone();
        let names: Vec<String> = (self.subs.lock().await.iter())
            .filter(|(n, e)| e.handle.is_some() && shared.holds(n))
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        for _ in 0..ASKS_PER_TICK {
            // One at a time: the asks not taken yet can still be withdrawn by their askers.
            let Some((id, sub, body)) = shared.asked(names.clone(), ASK_FRESH).await? else {
                break;
            };
            let answer = match serde_json::from_slice::<Ask>(&body) {
                Ok(ask) => self.answer_ask(&sub, ask).await,
                Err(e) => Answer::Failed(Failure::BadRequest(format!(
                    "this broker cannot read the request (a newer busbar sent it?): {e}"
                ))),
            };
            let bytes = serde_json::to_vec(&answer).expect("an answer encodes");
            if let Err(e) = shared.answer(id, bytes).await {
                let msg = format!("subscription {sub:?}: answering a request: {e}");
                busbar_broker::log::warn("busbar", "bus_cluster", &msg, &[]);
            }
        }
        Ok(())
    }

    /// Does `ask` for subscription `sub`, running here.
    async fn answer_ask(&self, sub: &str, ask: Ask) -> Answer {
        let done = match ask {
            Ask::Replay {
                name,
                from,
                to,
                rate,
            } => {
                let spec = ReplaySpec {
                    name,
                    from,
                    to,
                    rate,
                };
                self.start_replay_here(sub, spec).await.map(Answer::Run)
            }
            Ask::Cancel { run } => self.replay_here(sub, &run, true).await.map(Answer::Run),
            Ask::Redrive {
                topic,
                topic_id,
                letters,
                force,
            } => (self
                .redrive_here(sub, &topic, &topic_id, &letters, force)
                .await)
                .map(|(redriven, skipped)| Answer::Redriven { redriven, skipped }),
        };
        done.unwrap_or_else(|e| Answer::Failed(e.into()))
    }
}
