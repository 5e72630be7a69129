//! AlterUserScramCredentials (KIP-554): upserts carry the client-computed SaltedPassword, from
//! which the StoredKey and ServerKey are kept (never the password); deletions remove one
//! mechanism's credential. One result per user named, as Kafka answers: UNSUPPORTED_SASL_MECHANISM
//! (33), UNACCEPTABLE_CREDENTIAL (93: iterations outside 4096-16384, an empty name or salt),
//! RESOURCE_NOT_FOUND (91: deleting what does not exist), DUPLICATE_RESOURCE (92: a user and
//! mechanism named twice). A user's changes are checked before any is written, and written in one
//! record (all or none). While authentication is on it needs ALTER on the cluster (else 31).

use super::{sb, Ctx};
use crate::authz::{Authz, Op};
use crate::codes;
use busbar_broker::auth::scram::{Credential, Mechanism};
use busbar_broker::auth::{users, CredentialChange as Change};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use std::collections::{HashMap, HashSet};

type Refusal = (i16, String);

fn mechanism(t: i8) -> Result<Mechanism, Refusal> {
    Mechanism::from_kafka_type(t).ok_or((
        codes::UNSUPPORTED_SASL_MECHANISM,
        format!("Unknown SCRAM mechanism type {t}"),
    ))
}

/// Every user named, in order of first appearance, with its checked changes or the refusal.
fn plan(req: AlterUserScramCredentialsRequest) -> Vec<(String, Result<Vec<Change>, Refusal>)> {
    let mut out: Vec<(String, Result<Vec<Change>, Refusal>)> = Vec::new();
    // Hashed, so a request of n entries costs O(n), not O(n^2) (R16 review d).
    let mut seen: HashSet<(String, i8)> = HashSet::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut add = |name: String, t: i8, change: Result<Change, Refusal>| {
        let dup = !seen.insert((name.clone(), t));
        let i = *index.entry(name.clone()).or_insert_with(|| {
            out.push((name.clone(), Ok(Vec::new())));
            out.len() - 1
        });
        let slot = &mut out[i].1;
        let Ok(changes) = slot else { return };
        match change {
            _ if dup => {
                let why = format!(
                    "A user credential cannot be altered twice in the same request: {name}"
                );
                *slot = Err((codes::DUPLICATE_RESOURCE, why));
            }
            Ok(c) => changes.push(c),
            Err(refusal) => *slot = Err(refusal),
        }
    };
    for d in req.deletions {
        let name = d.name.as_str().to_string();
        add(
            name,
            d.mechanism,
            mechanism(d.mechanism).map(Change::Delete),
        );
    }
    for u in req.upsertions {
        let name = u.name.as_str().to_string();
        let change = mechanism(u.mechanism).and_then(|m| {
            users::validate_name(&name)
                .map_err(|e| (codes::UNACCEPTABLE_CREDENTIAL, e.to_string()))?;
            Credential::from_salted(m, &u.salt, i64::from(u.iterations), &u.salted_password)
                .map(|c| Change::Upsert(m, c))
                .map_err(|e| (codes::UNACCEPTABLE_CREDENTIAL, e.to_string()))
        });
        add(name, u.mechanism, change);
    }
    out
}

fn result(user: &str, refusal: Option<Refusal>) -> AlterUserScramCredentialsResult {
    let mut r = AlterUserScramCredentialsResult::default();
    r.user = sb(user);
    if let Some((code, message)) = refusal {
        r.error_code = code;
        r.error_message = Some(sb(message));
    }
    r
}

pub async fn handle(
    ctx: &Ctx<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let auth = ctx.shared.broker.auth();
    let allowed = Authz::new(ctx, "AlterUserScramCredentials").cluster(Op::Alter);
    let mut resp = AlterUserScramCredentialsResponse::default();
    for (name, changes) in plan(req) {
        if !allowed {
            let refusal = (
                codes::CLUSTER_AUTHORIZATION_FAILED,
                codes::ALTER_USERS_DENIED.to_string(),
            );
            resp.results.push(result(&name, Some(refusal)));
            continue;
        }
        let changes = match changes {
            Ok(c) => c,
            Err(refusal) => {
                resp.results.push(result(&name, Some(refusal)));
                continue;
            }
        };
        // All of one user's changes in one write: a refused one leaves the user as it was.
        let refusal = auth
            .alter_credentials(&name, changes)
            .await
            .err()
            .map(|e| (codes::of_auth(&e), e.to_string()));
        resp.results.push(result(&name, refusal));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion;

    /// R16 review (d): the duplicate checks scanned every earlier entry (O(n^2)).
    #[test]
    fn a_request_with_many_entries_is_planned_in_linear_time() {
        let mut req = AlterUserScramCredentialsRequest::default();
        for i in 0..60_000 {
            let mut d = ScramCredentialDeletion::default();
            d.name = sb(format!("user-{i}"));
            d.mechanism = 1;
            req.deletions.push(d);
        }
        let mut again = ScramCredentialDeletion::default();
        again.name = sb("user-7");
        again.mechanism = 1;
        req.deletions.push(again);
        let started = std::time::Instant::now();
        let planned = plan(req);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(planned.len(), 60_000);
        assert!(matches!(&planned[7].1, Err((code, _)) if *code == codes::DUPLICATE_RESOURCE));
        assert!(planned[8].1.is_ok());
    }
}
