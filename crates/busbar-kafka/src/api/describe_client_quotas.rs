//! DescribeClientQuotas (48, KIP-546): the stored quotas whose entity passes the filter
//! (components `{entity_type, match_type 0 exact | 1 default | 2 any, match}` and `strict`).
//! A bad filter (an unknown entity type, a type named twice, a match where none belongs or none
//! where one does) answers INVALID_REQUEST (42) with no entries, as Kafka. While authentication is
//! on, DESCRIBE_CONFIGS on CLUSTER is needed: for now super users only (31 otherwise).

use super::{sb, Ctx};
use crate::codes;
use busbar_broker::quota::{Filter, Match};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

/// The request's filter, or why it is malformed.
fn filter(req: &DescribeClientQuotasRequest) -> Result<Filter, String> {
    let mut f = Filter {
        components: Vec::new(),
        strict: req.strict,
    };
    for c in &req.components {
        let kind = c.entity_type.as_str().to_string();
        let m = match (c.match_type, &c._match) {
            (0, Some(name)) => Match::Exact(name.as_str().to_string()),
            (0, None) => return Err(format!("Missing match for exact {kind} filter")),
            (1, None) => Match::Default,
            (2, None) => Match::Any,
            (1 | 2, Some(_)) => return Err(format!("Unexpected match for {kind} filter")),
            (t, _) => return Err(format!("Unexpected match type {t}")),
        };
        f.components.push((kind, m));
    }
    Ok(f)
}

fn refused(code: i16, message: String) -> DescribeClientQuotasResponse {
    let mut resp = DescribeClientQuotasResponse::default();
    resp.error_code = code;
    resp.error_message = Some(sb(message));
    resp.entries = None;
    resp
}

pub fn handle(ctx: &Ctx<'_>, req: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    let authz = crate::authz::Authz::new(ctx, "DescribeClientQuotas");
    if !authz.cluster(busbar_broker::auth::acl::Operation::DescribeConfigs) {
        return refused(
            codes::CLUSTER_AUTHORIZATION_FAILED,
            "Cluster authorization failed (DESCRIBE_CONFIGS on CLUSTER)".into(),
        );
    }
    let found = filter(&req).and_then(|f| {
        ctx.shared
            .broker
            .quotas()
            .describe(&f)
            .map_err(|e| e.to_string())
    });
    let found = match found {
        Ok(found) => found,
        Err(why) => return refused(codes::INVALID_REQUEST, why),
    };
    let mut resp = DescribeClientQuotasResponse::default();
    let entries = found.into_iter().map(|(entity, values)| {
        let mut e = EntryData::default();
        e.entity = entity
            .parts()
            .into_iter()
            .map(|(kind, name)| {
                let mut d = EntityData::default();
                d.entity_type = sb(kind);
                d.entity_name = name.map(sb);
                d
            })
            .collect();
        e.values = values
            .into_iter()
            .map(|(key, value)| {
                let mut v = ValueData::default();
                v.key = sb(key);
                v.value = value;
                v
            })
            .collect();
        e
    });
    resp.entries = Some(entries.collect());
    resp
}
