//! ACL checks for the Kafka handlers (Kafka's per-API table, shared/spec/wave2-facts.md §3.5).
//!
//! A handler makes one [`Authz`] per request: it takes one snapshot of the ACLs (none at all while
//! authentication is off, when everything is allowed) and decides each resource against it, so a
//! request costs one lock and no allocation per partition. The principal is the connection's
//! (SASL user or mapped certificate), `User:ANONYMOUS` when there is none.
//!
//! Each denial of a resource the client named is one audit line (`outcome: denied`, the operation
//! in `detail`); filtering checks (Metadata listing all topics, ListGroups) deny silently, as
//! Kafka's `logIfDenied = false` does. The administrative APIs are audited once per resource from
//! their responses (`api/audit.rs`, denials included), so their checks write no line here.

use crate::api::Ctx;
use busbar_broker::audit::AuditEvent;
use busbar_broker::auth::acl::{self, AclSet, Operation, Requester, ResourceType};
use std::sync::Arc;

pub use busbar_broker::auth::acl::Operation as Op;
pub use busbar_broker::auth::acl::ResourceType as Res;

/// Kafka's TOPIC_AUTHORIZATION_FAILED.
pub const TOPIC_DENIED: i16 = 29;
/// Kafka's GROUP_AUTHORIZATION_FAILED.
pub const GROUP_DENIED: i16 = 30;
/// Kafka's CLUSTER_AUTHORIZATION_FAILED.
pub const CLUSTER_DENIED: i16 = 31;
/// Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
pub const TXN_DENIED: i16 = 53;
/// Kafka's SECURITY_DISABLED: the ACL APIs while authentication is off (Kafka without an
/// authorizer), so no one can store ACLs that would take effect once it is turned on.
pub const SECURITY_DISABLED: i16 = 54;
/// Its message.
pub const SECURITY_DISABLED_WHY: &str =
    "ACLs are not in use: auth.enabled is false on this broker (no authorizer)";

/// Whether the ACL APIs answer [`SECURITY_DISABLED`].
pub fn acls_disabled(ctx: &Ctx<'_>) -> bool {
    !ctx.shared.broker.auth().enabled()
}

/// The error code of a denial on a resource of type `ty`.
pub fn denied_code(ty: ResourceType) -> i16 {
    match ty {
        ResourceType::Topic => TOPIC_DENIED,
        ResourceType::Group => GROUP_DENIED,
        ResourceType::TransactionalId => TXN_DENIED,
        // Kafka's APIs check neither busbar type; a denial of one is the cluster's.
        ResourceType::Cluster | ResourceType::Subscription | ResourceType::Subject => {
            CLUSTER_DENIED
        }
    }
}

/// The APIs whose every outcome `api/audit.rs` records from the response (denials included).
const CENTRALLY_AUDITED: &[&str] = &[
    "AlterConfigs",
    "AlterUserScramCredentials",
    "CreateAcls",
    "CreatePartitions",
    "CreateTopics",
    "DeleteAcls",
    "DeleteGroups",
    "DeleteRecords",
    "DeleteTopics",
    "IncrementalAlterConfigs",
    "OffsetDelete",
];

/// The checks of one request.
pub struct Authz<'a> {
    ctx: &'a Ctx<'a>,
    /// The API name for the audit log (`Produce`).
    api: &'static str,
    /// `None` while authentication is off: everything is allowed.
    acls: Option<Arc<AclSet>>,
    /// Denials not yet audited: one line per operation and resource type is written when the
    /// request's checks end (on drop), so a request naming 20,000 topics is one line, not 20,000.
    denials: std::sync::Mutex<Vec<Denials>>,
}

/// Most resource names one denial audit line lists (the rest are counted).
pub const AUDIT_NAMES_MAX: usize = 10;

/// The denials of one operation on one resource type within a request.
struct Denials {
    op: Operation,
    ty: ResourceType,
    /// The first [`AUDIT_NAMES_MAX`] names.
    names: Vec<String>,
    count: usize,
}

impl Drop for Authz<'_> {
    fn drop(&mut self) {
        let denials = std::mem::take(self.denials.get_mut().unwrap_or_else(|e| e.into_inner()));
        for d in denials {
            let (resource, detail) = if d.count == 1 {
                (
                    format!("{}:{}", d.ty.name(), d.names[0]),
                    d.op.name().into(),
                )
            } else {
                let listed = d.names.len();
                let detail = format!("{}; {} denied, first {listed} listed", d.op.name(), d.count);
                (format!("{}:{}", d.ty.name(), d.names.join(",")), detail)
            };
            self.audit(resource, detail);
        }
    }
}

impl<'a> Authz<'a> {
    /// The checks of a request of `api` (its name, for the audit log).
    pub fn new(ctx: &'a Ctx<'a>, api: &'static str) -> Self {
        let auth = ctx.shared.broker.auth();
        let acls = auth.enabled().then(|| auth.acls().snapshot());
        Self {
            ctx,
            api,
            acls,
            denials: Default::default(),
        }
    }

    fn who(&self) -> Requester<'_> {
        Requester {
            user: self.ctx.principal.unwrap_or(acl::ANONYMOUS),
            host: self.ctx.peer.ip(),
        }
    }

    /// Whether `op` on `name` of `ty` is allowed, without auditing a denial.
    pub fn quietly(&self, op: Operation, ty: ResourceType, name: &str) -> bool {
        // The bus's own transactional ids (exactly-once topic targets) are no client's, not
        // even a super user's: a client committing or aborting one would break the bus's
        // exactly-once bookkeeping.
        if ty == ResourceType::TransactionalId && busbar_broker::txn::producer::reserved(name) {
            return false;
        }
        let Some(acls) = &self.acls else { return true };
        let config = self.ctx.shared.broker.auth().config();
        acl::decide(acls, config, self.who(), op, ty, name).allowed()
    }

    /// Whether `op` on `name` of `ty` is allowed; a denial is audited.
    pub fn allows(&self, op: Operation, ty: ResourceType, name: &str) -> bool {
        let ok = self.quietly(op, ty, name);
        if !ok {
            self.audit_denial(op, ty, name);
        }
        ok
    }

    /// `Ok` when allowed, else the denial's error code (audited).
    pub fn check(&self, op: Operation, ty: ResourceType, name: &str) -> Result<(), i16> {
        if self.allows(op, ty, name) {
            Ok(())
        } else {
            Err(denied_code(ty))
        }
    }

    /// Whether `op` on the cluster is allowed (a denial is audited).
    pub fn cluster(&self, op: Operation) -> bool {
        self.allows(op, ResourceType::Cluster, acl::CLUSTER_NAME)
    }

    /// Whether `op` on some resource of `ty` is allowed (KIP-679: WRITE on any topic lets a
    /// producer be idempotent); a denial is audited against `ty:*`.
    pub fn any(&self, op: Operation, ty: ResourceType) -> bool {
        let Some(acls) = &self.acls else { return true };
        let config = self.ctx.shared.broker.auth().config();
        let who = self.who();
        let ok =
            acl::is_super(config, who.user) || acls.allows_any(who, op, ty, config.allow_if_no_acl);
        if !ok {
            self.audit_denial(op, ty, "*");
        }
        ok
    }

    /// CREATE on the cluster or, failing that, on topic `name` (CreateTopics, auto-creation).
    pub fn may_create_topic(&self, name: &str) -> bool {
        self.quietly(Operation::Create, ResourceType::Cluster, acl::CLUSTER_NAME)
            || self.allows(Operation::Create, ResourceType::Topic, name)
    }

    /// Notes a denial, audited with the request's others of `op` and `ty` on drop.
    fn audit_denial(&self, op: Operation, ty: ResourceType, name: &str) {
        let denials = &self.ctx.shared.broker.metrics().acl_denials;
        denials.add(&[ty.name(), op.name()], 1);
        if CENTRALLY_AUDITED.contains(&self.api) {
            return;
        }
        let mut all = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        let i = match all.iter().position(|d| d.op == op && d.ty == ty) {
            Some(i) => i,
            None => {
                all.push(Denials {
                    op,
                    ty,
                    names: Vec::new(),
                    count: 0,
                });
                all.len() - 1
            }
        };
        let d = &mut all[i];
        if d.names.len() < AUDIT_NAMES_MAX {
            d.names.push(name.to_string());
        }
        d.count += 1;
    }

    fn audit(&self, resource: String, detail: String) {
        let ctx = self.ctx;
        let principal = format!("User:{}", ctx.principal.unwrap_or(acl::ANONYMOUS));
        let l = ctx.listener;
        ctx.shared.broker.audit().record(AuditEvent {
            principal,
            peer: Some(ctx.peer),
            listener: format!(
                "{}://{}:{}",
                l.security.name(),
                l.advertised_host,
                l.advertised_port
            ),
            operation: self.api.to_string(),
            resource,
            outcome: "denied".into(),
            detail: Some(detail),
        });
    }
}
