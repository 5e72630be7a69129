//! Who a subscription runs as. A subscription made through the API while authentication is on
//! records its creator (user and address, stored with the subscription in
//! `meta/subscriptions.json`); its worker reads the sources only while that principal may READ
//! every source topic ([`Gate`]). A subscription without a creator (made while authentication was
//! off, declared in a configuration file, or stored by an earlier busbar) is not checked.
//!
//! The decision is cached for [`RECHECK_EVERY`], so an ACL granted or revoked applies within
//! about a second, and a worker does not decide once per event.

use busbar_broker::audit::AuditEvent;
use busbar_broker::auth::acl::{Operation, ResourceType};
use busbar_broker::Broker;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// How long a worker keeps its creator's READ decision before asking again.
pub const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// The principal a subscription runs as: the user that created it, from the address it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    /// The user name (Kafka's `User:<user>`).
    pub user: String,
    /// The client address of the create request (ACL host filters apply to it).
    pub host: IpAddr,
}

/// A worker's cached decision: may its creator READ its sources?
pub struct Gate {
    creator: Option<Creator>,
    /// When last decided, and the first source topic denied then (`None`: all allowed).
    checked: Option<(Instant, Option<String>)>,
}

impl Gate {
    pub fn new(creator: Option<Creator>) -> Self {
        Self {
            creator,
            checked: None,
        }
    }

    /// Writes the audit line of a subscription whose creator lost (or regained: `allowed`)
    /// READ on `topic`.
    pub fn audit(&self, broker: &Broker, sub: &str, topic: &str, allowed: bool) {
        let Some(c) = &self.creator else { return };
        broker.audit().record(AuditEvent {
            principal: format!("User:{}", c.user),
            peer: Some(std::net::SocketAddr::new(c.host, 0)),
            listener: "bus".into(),
            operation: "Deliver".into(),
            resource: format!("SUBSCRIPTION:{sub} reading TOPIC:{topic}"),
            outcome: match allowed {
                true => "allowed".into(),
                false => "denied".into(),
            },
            detail: Some(match allowed {
                true => "READ granted again: deliveries resume".into(),
                false => {
                    "the creator may not READ a source: deliveries pause (unauthorized)".into()
                }
            }),
        });
    }

    /// The first of `sources` the creator may not READ (`None` when it may read all, or when
    /// the subscription has no creator), decided again once [`RECHECK_EVERY`] has passed.
    pub fn denied(&mut self, broker: &Broker, sources: &[String]) -> Option<String> {
        let c = self.creator.as_ref()?;
        if let Some((at, denied)) = &self.checked {
            if at.elapsed() < RECHECK_EVERY {
                return denied.clone();
            }
        }
        let auth = broker.auth();
        let denied = sources
            .iter()
            .find(|t| {
                !auth
                    .authorize(
                        Some(&c.user),
                        c.host,
                        Operation::Read,
                        ResourceType::Topic,
                        t,
                    )
                    .allowed()
            })
            .cloned();
        self.checked = Some((Instant::now(), denied.clone()));
        denied
    }
}
