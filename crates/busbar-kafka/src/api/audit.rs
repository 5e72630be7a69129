//! Audit lines of administrative Kafka requests, written centrally after dispatch (`mod.rs`):
//! one line per resource of the response with its outcome (`success`; `denied` for the
//! authorization errors 29, 30, 31, 53; else `failed` with the code and message in `detail`).
//!
//! An API is audited when [`entries`] has an arm for its response (the resource names come from
//! the response) and, when the response lacks them (CreateAcls), [`Pending::of`] takes them from
//! the request. Adding an administrative API is one arm in each.

use super::Ctx;
use busbar_broker::audit::AuditEvent;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

/// What the request tells that the response does not: `validate_only`, CreateAcls' resources.
pub struct Pending {
    validate_only: bool,
    resources: Vec<String>,
}

/// One audited resource of a response: its name, error code and message.
struct Entry {
    resource: String,
    code: i16,
    message: Option<String>,
    /// What was done to it, when the response says more than the API's name.
    what: Option<String>,
}

impl Pending {
    /// The request's part of an administrative request's audit; `None` for other requests.
    pub fn of(req: &RequestKind) -> Option<Self> {
        let (validate_only, resources) = match req {
            RequestKind::CreateTopics(r) => (r.validate_only, Vec::new()),
            RequestKind::CreatePartitions(r) => (r.validate_only, Vec::new()),
            RequestKind::AlterConfigs(r) => (r.validate_only, Vec::new()),
            RequestKind::IncrementalAlterConfigs(r) => (r.validate_only, Vec::new()),
            RequestKind::AlterClientQuotas(r) => (r.validate_only, Vec::new()),
            RequestKind::CreateAcls(r) => {
                let acl = |c: &kafka_protocol::messages::create_acls_request::AclCreation| {
                    resource_of(c.resource_type, &c.resource_name)
                };
                (false, r.creations.iter().map(acl).collect())
            }
            RequestKind::DeleteTopics(_)
            | RequestKind::DeleteRecords(_)
            | RequestKind::DeleteGroups(_)
            | RequestKind::OffsetDelete(_)
            | RequestKind::DeleteAcls(_)
            | RequestKind::AlterUserScramCredentials(_) => (false, Vec::new()),
            _ => return None,
        };
        Some(Self {
            validate_only,
            resources,
        })
    }

    /// Records one line per resource of `resp`.
    pub fn finish(self, ctx: &Ctx<'_>, resp: &ResponseKind) {
        let audit = ctx.shared.broker.audit();
        if !audit.enabled() {
            return;
        }
        let Some((operation, entries)) = entries(resp, &self.resources) else {
            return;
        };
        let principal = match ctx.principal {
            Some(user) => format!("User:{user}"),
            None => "User:ANONYMOUS".to_string(),
        };
        let listener = listener_name(ctx.listener);
        for e in entries {
            let mut detail: Vec<String> = e.what.into_iter().collect();
            if self.validate_only {
                detail.push("validate_only".into());
            }
            if e.code != 0 {
                let message = e.message.unwrap_or_default();
                detail.push(
                    format!("error {}: {message}", e.code)
                        .trim_end()
                        .to_string(),
                );
            }
            audit.record(AuditEvent {
                principal: principal.clone(),
                peer: Some(ctx.peer),
                listener: listener.clone(),
                operation: operation.to_string(),
                resource: e.resource,
                outcome: outcome(e.code).to_string(),
                detail: (!detail.is_empty()).then(|| detail.join("; ")),
            });
        }
    }
}

/// `success`, `denied` (Kafka's authorization errors) or `failed`.
pub fn outcome(code: i16) -> &'static str {
    match code {
        0 => "success",
        29 | 30 | 31 | 53 => "denied",
        _ => "failed",
    }
}

/// A listener as an audit line names it: `SASL_PLAINTEXT://127.0.0.1:9092` (its advertised
/// address).
pub fn listener_name(l: &crate::Listener) -> String {
    format!(
        "{}://{}:{}",
        l.security.name(),
        l.advertised_host,
        l.advertised_port
    )
}

/// `TYPE:name` of a Kafka resource type code (configs and ACLs share the codes that matter).
fn resource_of(ty: i8, name: &str) -> String {
    let ty = match ty {
        2 => "TOPIC",
        3 => "GROUP",
        4 => "CLUSTER",
        5 => "TRANSACTIONAL_ID",
        7 => "USER",
        8 => "BROKER_LOGGER",
        100 => "SUBSCRIPTION",
        101 => "SUBJECT",
        _ => "UNKNOWN",
    };
    // AlterConfigs names a broker (type 4) by its id.
    format!("{ty}:{name}")
}

fn text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|m| m.to_string())
}

fn entry(resource: String, code: i16, message: Option<String>) -> Entry {
    Entry {
        resource,
        code,
        message,
        what: None,
    }
}

/// The API's name and one entry per resource of an administrative response.
fn entries(resp: &ResponseKind, requested: &[String]) -> Option<(&'static str, Vec<Entry>)> {
    let topic = |n: &str| format!("TOPIC:{n}");
    Some(match resp {
        ResponseKind::CreateTopics(r) => (
            "CreateTopics",
            r.topics
                .iter()
                .map(|t| entry(topic(&t.name), t.error_code, text(&t.error_message)))
                .collect(),
        ),
        ResponseKind::DeleteTopics(r) => (
            "DeleteTopics",
            r.responses
                .iter()
                .map(|t| {
                    let name = t
                        .name
                        .as_ref()
                        .map_or_else(|| format!("TOPIC:id {}", t.topic_id.simple()), |n| topic(n));
                    entry(name, t.error_code, text(&t.error_message))
                })
                .collect(),
        ),
        ResponseKind::CreatePartitions(r) => (
            "CreatePartitions",
            r.results
                .iter()
                .map(|t| entry(topic(&t.name), t.error_code, text(&t.error_message)))
                .collect(),
        ),
        ResponseKind::AlterConfigs(r) => (
            "AlterConfigs",
            r.responses
                .iter()
                .map(|c| {
                    let name = resource_of(c.resource_type, &c.resource_name);
                    entry(name, c.error_code, text(&c.error_message))
                })
                .collect(),
        ),
        ResponseKind::IncrementalAlterConfigs(r) => (
            "IncrementalAlterConfigs",
            r.responses
                .iter()
                .map(|c| {
                    let name = resource_of(c.resource_type, &c.resource_name);
                    entry(name, c.error_code, text(&c.error_message))
                })
                .collect(),
        ),
        ResponseKind::DeleteRecords(r) => (
            "DeleteRecords",
            r.topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| Entry {
                        what: Some(format!("before offset {}", p.low_watermark)),
                        ..entry(
                            format!("TOPIC:{}/{}", &*t.name, p.partition_index),
                            p.error_code,
                            None,
                        )
                    })
                })
                .collect(),
        ),
        ResponseKind::DeleteGroups(r) => (
            "DeleteGroups",
            r.results
                .iter()
                .map(|g| entry(format!("GROUP:{}", &*g.group_id), g.error_code, None))
                .collect(),
        ),
        ResponseKind::OffsetDelete(r) if r.error_code != 0 => (
            "OffsetDelete",
            vec![entry("GROUP:".into(), r.error_code, None)],
        ),
        ResponseKind::OffsetDelete(r) => (
            "OffsetDelete",
            r.topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        let name = format!("TOPIC:{}/{}", &*t.name, p.partition_index);
                        entry(name, p.error_code, None)
                    })
                })
                .collect(),
        ),
        ResponseKind::AlterUserScramCredentials(r) => (
            "AlterUserScramCredentials",
            r.results
                .iter()
                .map(|u| {
                    entry(
                        format!("USER:{}", u.user),
                        u.error_code,
                        text(&u.error_message),
                    )
                })
                .collect(),
        ),
        ResponseKind::CreateAcls(r) => (
            "CreateAcls",
            r.results
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let name = requested.get(i).cloned().unwrap_or_default();
                    entry(name, a.error_code, text(&a.error_message))
                })
                .collect(),
        ),
        ResponseKind::DeleteAcls(r) => ("DeleteAcls", delete_acls(r)),
        ResponseKind::AlterClientQuotas(r) => (
            "AlterClientQuotas",
            r.entries
                .iter()
                .map(|e| {
                    let entity: Vec<String> = e
                        .entity
                        .iter()
                        .map(|d| {
                            let name = d.entity_name.as_deref().unwrap_or("<default>");
                            format!("{}={name}", d.entity_type)
                        })
                        .collect();
                    let name = format!("QUOTA:{}", entity.join(","));
                    entry(name, e.error_code, text(&e.error_message))
                })
                .collect(),
        ),
        _ => return None,
    })
}

/// DeleteAcls: one entry per ACL deleted (or failed to), one per filter that failed whole.
fn delete_acls(r: &kafka_protocol::messages::DeleteAclsResponse) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in &r.filter_results {
        if f.error_code != 0 {
            out.push(entry(
                "ACL filter".into(),
                f.error_code,
                text(&f.error_message),
            ));
            continue;
        }
        for a in &f.matching_acls {
            out.push(Entry {
                what: Some(format!(
                    "principal {} host {} operation {} permission {}",
                    a.principal, a.host, a.operation, a.permission_type
                )),
                ..entry(
                    resource_of(a.resource_type, &a.resource_name),
                    a.error_code,
                    text(&a.error_message),
                )
            });
        }
    }
    out
}

/// Records a failed SASL step from `peer` on `listener`: `user` is the name the client sent
/// (empty when none could be read), `why` the server's reason (never a password).
pub fn auth_failure(
    shared: &crate::Shared,
    peer: std::net::SocketAddr,
    listener: &crate::Listener,
    operation: &str,
    (mechanism, user): (&str, &str),
    why: &str,
) {
    let m = &shared.broker.metrics().auth_failures;
    m.add(&["kafka", mechanism], 1);
    let audit = shared.broker.audit();
    if !audit.enabled() {
        return;
    }
    audit.record(AuditEvent {
        principal: if user.is_empty() {
            String::new()
        } else {
            format!("User:{user}")
        },
        peer: Some(peer),
        listener: listener_name(listener),
        operation: operation.to_string(),
        resource: format!("USER:{user}"),
        outcome: "failed".into(),
        detail: Some(why.to_string()),
    });
}
