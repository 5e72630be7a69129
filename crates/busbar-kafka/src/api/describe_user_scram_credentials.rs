//! DescribeUserScramCredentials (KIP-554): each user's mechanisms and iteration counts, never a
//! secret. All users when the list is null or empty; RESOURCE_NOT_FOUND (91) for an unknown one,
//! DUPLICATE_RESOURCE (92) for a name asked twice. It needs DESCRIBE on the cluster (else
//! CLUSTER_AUTHORIZATION_FAILED, 31).

use super::{sb, Ctx};
use crate::authz::{Authz, Op};
use crate::codes;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use std::collections::{HashMap, HashSet};

fn result(user: &str, code: i16, message: Option<String>) -> DescribeUserScramCredentialsResult {
    let mut r = DescribeUserScramCredentialsResult::default();
    r.user = sb(user);
    r.error_code = code;
    r.error_message = message.map(sb);
    r
}

pub fn handle(
    ctx: &Ctx<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let auth = ctx.shared.broker.auth();
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if !Authz::new(ctx, "DescribeUserScramCredentials").cluster(Op::Describe) {
        // As Kafka's getErrorResponse: the error at the top and for each user asked (librdkafka
        // 2.16 crashes on an error answer without per-user results).
        let code = codes::CLUSTER_AUTHORIZATION_FAILED;
        resp.error_code = code;
        resp.error_message = Some(sb(codes::DESCRIBE_USERS_DENIED));
        resp.results = req
            .users
            .unwrap_or_default()
            .iter()
            .map(|u| {
                result(
                    u.name.as_str(),
                    code,
                    Some(codes::DESCRIBE_USERS_DENIED.into()),
                )
            })
            .collect();
        return resp;
    }
    let users = auth.list_users();
    let asked: Vec<String> = match req.users {
        Some(names) if !names.is_empty() => names
            .into_iter()
            .map(|u| u.name.as_str().to_string())
            .collect(),
        _ => users.iter().map(|u| u.name.clone()).collect(),
    };
    // Hashed, so a request of n names costs O(n), not O(n^2) (R16 review d).
    let mut times: HashMap<&str, usize> = HashMap::new();
    for name in &asked {
        *times.entry(name.as_str()).or_default() += 1;
    }
    let by_name: HashMap<&str, &busbar_broker::auth::users::UserInfo> =
        users.iter().map(|u| (u.name.as_str(), u)).collect();
    let mut reported: HashSet<&str> = HashSet::new();
    for name in &asked {
        if times[name.as_str()] > 1 {
            if reported.insert(name.as_str()) {
                let why = format!("Cannot describe SCRAM credentials for the same user twice in a single request: {name}");
                resp.results
                    .push(result(name, codes::DUPLICATE_RESOURCE, Some(why)));
            }
            continue;
        }
        let Some(info) = by_name.get(name.as_str()) else {
            let why = format!("Attempt to describe a user credential that does not exist: {name}");
            resp.results
                .push(result(name, codes::RESOURCE_NOT_FOUND, Some(why)));
            continue;
        };
        let mut r = result(name, codes::NONE, None);
        r.credential_infos = info
            .mechanisms
            .iter()
            .map(|(m, iterations)| {
                let mut c = CredentialInfo::default();
                c.mechanism = m.kafka_type();
                c.iterations = *iterations as i32;
                c
            })
            .collect();
        resp.results.push(r);
    }
    resp
}
