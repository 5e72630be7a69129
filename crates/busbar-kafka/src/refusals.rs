//! The log of refused requests: every request answered with an error code, or closed because it
//! cannot be served, is written to stderr with the reason, the API, the client id and the peer,
//! so "see the broker logs" (kafkajs, the Java tools) leads somewhere, and so is a connection
//! closed for a malformed frame or a timeout. Rate-limited: at most `LINES_PER_SECOND` lines per
//! second across all connections (refusals and closes together), then one line saying how many
//! were left out. Routine answers of the group protocol (REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED, the
//! coordinator-loading codes) are not refusals and are not logged.

use kafka_protocol::messages::ResponseKind;
use kafka_protocol::ResponseError;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most refusal lines written per second; the rest are counted and summarised.
pub const LINES_PER_SECOND: u32 = 20;

/// Codes that are steps of a protocol, not refusals.
const ROUTINE: &[i16] = &[
    14, // COORDINATOR_LOAD_IN_PROGRESS
    15, // COORDINATOR_NOT_AVAILABLE
    16, // NOT_COORDINATOR
    27, // REBALANCE_IN_PROGRESS
    79, // MEMBER_ID_REQUIRED
];

struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

/// The rate-limited refusal log shared by every connection.
pub struct Refusals {
    window: Mutex<Window>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                start: Instant::now(),
                written: 0,
                suppressed: 0,
            }),
        }
    }
}

impl Refusals {
    /// Logs one refusal (when the rate allows).
    pub fn log(&self, peer: SocketAddr, client_id: &str, api: &str, reason: &str) {
        let msg = format!("refused {api} from {peer} (client {client_id:?}): {reason}");
        self.line("request_refused", &msg);
    }

    /// Writes one line of `event` (`request_refused`, `connection_closed`) when the rate allows:
    /// both share the window, so a flood of bad connections cannot flood the log either.
    pub fn line(&self, event: &str, msg: &str) {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.start.elapsed() >= Duration::from_secs(1) {
            if w.suppressed > 0 {
                let msg = format!(
                    "{} more refused requests and closed connections not logged (at most \
                     {LINES_PER_SECOND} lines a second)",
                    w.suppressed
                );
                busbar_broker::log::info("busbar-kafka", "lines_suppressed", &msg, &[]);
            }
            *w = Window {
                start: Instant::now(),
                written: 0,
                suppressed: 0,
            };
        }
        if w.written >= LINES_PER_SECOND {
            w.suppressed += 1;
            return;
        }
        w.written += 1;
        drop(w);
        busbar_broker::log::info("busbar-kafka", event, msg, &[]);
    }

    /// Logs `resp` if it refuses anything: its first non-routine error code, by name, with the
    /// message the answer carries.
    pub fn answered(&self, peer: SocketAddr, client_id: &str, version: i16, resp: &ResponseKind) {
        if let Some((code, message)) = first_error(resp) {
            let name = ResponseError::try_from_code(code)
                .map_or_else(|| format!("error {code}"), |e| format!("{e:?} ({code})"));
            let reason = match message {
                Some(m) if !m.is_empty() => format!("{name}: {m}"),
                _ => name,
            };
            self.log(
                peer,
                client_id,
                &format!("{} v{version}", api_name(resp)),
                &reason,
            );
        }
    }
}

fn api_name(resp: &ResponseKind) -> String {
    let debug = format!("{resp:?}");
    debug.split('(').next().unwrap_or("request").to_string()
}

/// The first refusing error code in a response, with its message when it carries one.
fn first_error(resp: &ResponseKind) -> Option<(i16, Option<String>)> {
    let mut found: Vec<(i16, Option<String>)> = Vec::new();
    let mut add = |code: i16, msg: Option<&kafka_protocol::protocol::StrBytes>| {
        found.push((code, msg.map(|m| m.to_string())));
    };
    use ResponseKind as R;
    match resp {
        R::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| {
                add(p.error_code, p.error_message.as_ref());
            }),
        R::Fetch(r) => {
            add(r.error_code, None);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code, None));
        }
        R::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code, None)),
        R::Metadata(r) => r.topics.iter().for_each(|t| add(t.error_code, None)),
        R::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code, None)),
        R::OffsetFetch(r) => {
            add(r.error_code, None);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code, None));
        }
        R::FindCoordinator(r) => add(r.error_code, r.error_message.as_ref()),
        R::JoinGroup(r) => add(r.error_code, None),
        R::SyncGroup(r) => add(r.error_code, None),
        R::Heartbeat(r) => add(r.error_code, None),
        R::LeaveGroup(r) => {
            add(r.error_code, None);
            r.members.iter().for_each(|m| add(m.error_code, None));
        }
        R::DescribeGroups(r) => r.groups.iter().for_each(|g| add(g.error_code, None)),
        R::ListGroups(r) => add(r.error_code, None),
        R::DeleteGroups(r) => r.results.iter().for_each(|g| add(g.error_code, None)),
        R::CreateTopics(r) => r
            .topics
            .iter()
            .for_each(|t| add(t.error_code, t.error_message.as_ref())),
        R::DeleteTopics(r) => r
            .responses
            .iter()
            .for_each(|t| add(t.error_code, t.error_message.as_ref())),
        R::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code, None)),
        R::DescribeConfigs(r) => r
            .results
            .iter()
            .for_each(|x| add(x.error_code, x.error_message.as_ref())),
        R::AlterConfigs(r) => r
            .responses
            .iter()
            .for_each(|x| add(x.error_code, x.error_message.as_ref())),
        R::IncrementalAlterConfigs(r) => r
            .responses
            .iter()
            .for_each(|x| add(x.error_code, x.error_message.as_ref())),
        R::CreatePartitions(r) => r
            .results
            .iter()
            .for_each(|x| add(x.error_code, x.error_message.as_ref())),
        R::InitProducerId(r) => add(r.error_code, None),
        R::OffsetDelete(r) => {
            add(r.error_code, None);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| add(p.error_code, None));
        }
        R::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| add(p.error_code, None)),
        R::DescribeCluster(r) => add(r.error_code, r.error_message.as_ref()),
        R::DescribeLogDirs(r) => add(r.error_code, None),
        R::ApiVersions(r) => add(r.error_code, None),
        _ => {}
    }
    found
        .into_iter()
        .find(|(c, _)| *c != 0 && !ROUTINE.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::JoinGroupResponse;

    #[test]
    fn routine_codes_are_not_refusals_and_names_come_from_the_response() {
        let mut j = JoinGroupResponse::default();
        j.error_code = 79;
        assert_eq!(first_error(&ResponseKind::JoinGroup(j.clone())), None);
        j.error_code = 24;
        assert_eq!(
            first_error(&ResponseKind::JoinGroup(j.clone())),
            Some((24, None))
        );
        assert_eq!(api_name(&ResponseKind::JoinGroup(j)), "JoinGroup");
    }

    #[test]
    fn the_rate_is_limited() {
        let r = Refusals::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..LINES_PER_SECOND + 5 {
            r.log(peer, "c", "Metadata v12", "test");
        }
        let w = r.window.lock().unwrap();
        assert_eq!((w.written, w.suppressed), (LINES_PER_SECOND, 5));
    }
}
