//! AlterClientQuotas (49, KIP-546): per entry, set (`value`) or remove (`remove`) quota keys of
//! one entity; each entry is checked whole and applied in one durable write, or refused alone
//! with INVALID_REQUEST (42): an unknown key or entity type (`ip` included: busbar has no
//! connection-rate quotas), a type named twice, an empty entity, a key named twice, a byte rate
//! that is not a positive whole number. `validate_only` checks and writes nothing. While
//! authentication is on, ALTER_CONFIGS on CLUSTER is needed: for now super users only (31).

use super::{sb, Ctx};
use crate::codes;
use busbar_broker::quota::{Entity, Op};
use busbar_broker::BrokerError;
use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};

type Entry = kafka_protocol::messages::alter_client_quotas_request::EntryData;

fn result(entry: &Entry, refusal: Option<(i16, String)>) -> EntryData {
    let mut r = EntryData::default();
    r.entity = entry
        .entity
        .iter()
        .map(|e| {
            let mut d = EntityData::default();
            d.entity_type = e.entity_type.clone();
            d.entity_name = e.entity_name.clone();
            d
        })
        .collect();
    if let Some((code, message)) = refusal {
        r.error_code = code;
        r.error_message = Some(sb(message));
    }
    r
}

fn code_of(e: &BrokerError) -> i16 {
    match e {
        BrokerError::InvalidRequest(_) => codes::INVALID_REQUEST,
        other => codes::of(other),
    }
}

async fn apply(ctx: &Ctx<'_>, entry: &Entry, validate_only: bool) -> Result<(), BrokerError> {
    let entity = Entity::from_parts(
        entry
            .entity
            .iter()
            .map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())),
    )?;
    let ops: Vec<Op> = entry
        .ops
        .iter()
        .map(|o| match o.remove {
            true => Op::Remove(o.key.as_str().to_string()),
            false => Op::Set(o.key.as_str().to_string(), o.value),
        })
        .collect();
    let quotas = ctx.shared.broker.quotas();
    quotas.alter(&entity, &ops, validate_only).await
}

pub async fn handle(ctx: &Ctx<'_>, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let authz = crate::authz::Authz::new(ctx, "AlterClientQuotas");
    let allowed = authz.cluster(busbar_broker::auth::acl::Operation::AlterConfigs);
    let mut resp = AlterClientQuotasResponse::default();
    for entry in &req.entries {
        let refusal = if !allowed {
            let why = "Cluster authorization failed (ALTER_CONFIGS on CLUSTER)";
            Some((codes::CLUSTER_AUTHORIZATION_FAILED, why.to_string()))
        } else {
            apply(ctx, entry, req.validate_only)
                .await
                .err()
                .map(|e| (code_of(&e), e.to_string()))
        };
        resp.entries.push(result(entry, refusal));
    }
    resp
}
