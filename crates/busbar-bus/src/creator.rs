//! Who a subscription runs as. A subscription made through the API while authentication is on
//! records its creator (user and address, stored with the subscription in
//! `meta/subscriptions.json`); its worker reads and delivers only while that principal may do
//! everything creating it needed ([`Gate`]): READ every source topic, WRITE its target topic (a
//! topic target) and WRITE its dead-letter topic. A creator that was a stored user when it
//! created the subscription must also still exist: once the user is deleted the subscription
//! pauses, though its ACLs stay (as in Kafka), and resumes if the user is created again. Super
//! users are always allowed. A subscription without a creator (made while authentication was
//! off, declared in a configuration file, or stored by an earlier busbar) is not checked, nor is
//! any while authentication is off.
//!
//! The decision is cached for [`RECHECK_EVERY`], so an ACL granted or revoked (or a user deleted)
//! applies within about a second, and a worker does not decide once per event.

use crate::spec::SubscriptionSpec;
use busbar_broker::audit::AuditEvent;
use busbar_broker::auth::acl::{Operation, ResourceType};
use busbar_broker::Broker;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// How long a worker keeps its creator's decision before asking again.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// The principal a subscription runs as: the user that created it, from the address it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// The user name (Kafka's `User:<user>`).
    pub user: String,
    /// The client address of the create request (ACL host filters apply to it).
    pub host: IpAddr,
}

/// Why a subscription's creator may not run it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The creator may not do `op` (READ a source, WRITE the target or dead-letter topic) on
    /// the topic named by spec field `field`.
    Topic {
        op: Operation,
        field: String,
        topic: String,
    },
    /// The creator was a stored user and has been deleted.
    Deleted,
}

impl Denial {
    /// The audit line's resource.
    fn resource(&self, sub: &str, user: &str) -> String {
        match self {
            Denial::Topic { op, topic, .. } => {
                format!("SUBSCRIPTION:{sub} {} TOPIC:{topic}", doing(*op))
            }
            Denial::Deleted => format!("SUBSCRIPTION:{sub} running as User:{user}"),
        }
    }

    /// The audit line's detail, when the denial starts (`allowed` false) or ends.
    fn detail(&self, user: &str, allowed: bool) -> String {
        match (self, allowed) {
            (Denial::Topic { op, field, topic }, false) => format!(
                "the creator may not {} TOPIC:{topic} ({field}): deliveries pause (unauthorized)",
                op.name()
            ),
            (Denial::Topic { op, topic, .. }, true) => format!(
                "{} on TOPIC:{topic} granted again: deliveries resume",
                op.name()
            ),
            (Denial::Deleted, false) => {
                format!("the creator User:{user} was deleted: deliveries pause (unauthorized)")
            }
            (Denial::Deleted, true) => {
                format!("the creator User:{user} exists again: deliveries resume")
            }
        }
    }
}

fn doing(op: Operation) -> &'static str {
    match op {
        Operation::Read => "reading",
        _ => "writing",
    }
}

/// A worker's cached decision: may its creator run the subscription?
pub struct Gate {
    creator: Option<Creator>,
    /// Whether the creator was a stored user when it made the subscription (only such a creator
    /// is paused once deleted: a certificate's principal need not be a stored user).
    stored_user: bool,
    /// When last decided, and the denial then (`None`: allowed).
    checked: Option<(Instant, Option<Denial>)>,
    /// The denial last written to the audit log (its end is audited once it ends).
    reported: Option<Denial>,
}

impl Gate {
    /// The gate of a subscription made by `creator` (`None`: unchecked); `stored_user`: the
    /// creator was a stored user then (`SubRecord::creator_is_user`).
    pub fn new(creator: Option<Creator>, stored_user: bool) -> Self {
        Self {
            creator,
            stored_user,
            checked: None,
            reported: None,
        }
    }

    /// Writes an audit line when the denial changes: `denied` starts (a new denial) or, with
    /// `None`, the one last written ends (the subscription resumes).
    pub fn report(&mut self, broker: &Broker, sub: &str, denied: Option<&Denial>) {
        if self.reported.as_ref() == denied {
            return;
        }
        let ended = self.reported.take();
        let Some(c) = &self.creator else { return };
        let (denial, allowed) = match (denied, &ended) {
            (Some(d), _) => (d, false),
            (None, Some(d)) => (d, true),
            (None, None) => return,
        };
        broker.audit().record(AuditEvent {
            principal: format!("User:{}", c.user),
            peer: Some(std::net::SocketAddr::new(c.host, 0)),
            listener: "bus".into(),
            operation: "Deliver".into(),
            resource: denial.resource(sub, &c.user),
            outcome: match allowed {
                true => "allowed".into(),
                false => "denied".into(),
            },
            detail: Some(denial.detail(&c.user, allowed)),
        });
        self.reported = denied.cloned();
    }

    /// Why the creator may not run `spec` now (`None` when it may, or when the subscription has
    /// no creator), decided again once [`RECHECK_EVERY`] has passed.
    pub fn denied(&mut self, broker: &Broker, spec: &SubscriptionSpec) -> Option<Denial> {
        let c = self.creator.as_ref()?;
        if let Some((at, denied)) = &self.checked {
            if at.elapsed() < RECHECK_EVERY {
                return denied.clone();
            }
        }
        let denied = decide(broker, c, self.stored_user, spec);
        self.checked = Some((Instant::now(), denied.clone()));
        denied
    }
}

/// The first thing `c` may not do of what running `spec` needs: exist (if it was a stored
/// user), READ each source, WRITE the target and dead-letter topics.
fn decide(
    broker: &Broker,
    c: &Creator,
    stored_user: bool,
    spec: &SubscriptionSpec,
) -> Option<Denial> {
    let auth = broker.auth();
    if !auth.enabled() || auth.is_super(&c.user) {
        return None;
    }
    if stored_user && !auth.users().exists(&c.user) {
        return Some(Denial::Deleted);
    }
    spec.topics().into_iter().find_map(|(field, topic)| {
        let op = match field.starts_with("sources") {
            true => Operation::Read,
            false => Operation::Write,
        };
        let decision = auth.authorize(Some(&c.user), c.host, op, ResourceType::Topic, &topic);
        (!decision.allowed()).then_some(Denial::Topic { op, field, topic })
    })
}
