//! Group consumption over HTTP, as REST proxies offer it: a consumer instance joins a group and
//! lives on the server; the client polls it for events and commits its positions. Each instance is
//! a task owning a `GroupConsumer`, so it heartbeats (and takes part in rebalances) between polls.
//! An instance not used for `consumer_idle_timeout` leaves its group and is removed.
//! Also Server-Sent Events: a partition from an offset, or a group (an instance for the stream's
//! life that commits each batch once the next one is requested).
//! Instances and event streams together are bounded by `http.consumers_max`: each holds a
//! [`Slot`], taken before anything is joined or read and given back when it ends, so concurrent
//! requests cannot pass the limit between a check and an insert.
//! Reads are authorized again on every use, as Kafka checks every Fetch and OffsetCommit: each
//! poll, commit and stream batch needs READ on the group and on every topic it reads - whatever
//! the group leader assigned - and the creating user must still exist ([`Reader`]). An instance
//! answers only its creating principal (any other gets 404).

use crate::authz::Caller;
use crate::body;
use crate::error::{ApiError, ApiResult};
use crate::events::{only_params, partition_param, query_int};
use crate::render::{Encoding, EventView};
use crate::schema_codec;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use busbar_broker::auth::acl::{Operation, ResourceType};
use busbar_broker::{Broker, BrokerError, ConsumerOptions, GroupConsumer, StartAt, StoredEvent};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<ApiResult<T>>;
/// (topic, partition, next offset) of each assigned partition.
type Positions = Vec<(String, u32, u64)>;

enum Cmd {
    Poll {
        max: usize,
        wait: Duration,
        reader: Reader,
        reply: Reply<Vec<StoredEvent>>,
    },
    Commit {
        reader: Reader,
        reply: Reply<Vec<(String, u32, u64)>>,
    },
    Describe {
        reply: Reply<(String, i32, Positions)>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// A live instance: its task's mailbox and the principal that created it.
struct Entry {
    tx: mpsc::Sender<Cmd>,
    owner: Option<String>,
}

/// The live consumer instances.
#[derive(Default)]
pub struct Consumers {
    map: Mutex<HashMap<(String, String), Entry>>,
    next: AtomicU64,
    /// Instances and event streams held (each owns a [`Slot`]).
    held: AtomicUsize,
}

/// One of `http.consumers_max` places, held by an instance or an event stream for its life.
pub struct Slot(Arc<Consumers>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a place, or answers 429 when `http.consumers_max` are held.
fn reserve(app: &App) -> ApiResult<Slot> {
    let max = app.config.consumers_max;
    app.consumers
        .held
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .map(|_| Slot(app.consumers.clone()))
        .map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_consumers",
                format!(
                    "the server holds its limit of {max} consumer instances and event streams \
                     (http.consumers_max); close some"
                ),
            )
        })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConsumerCreate)]
struct Create {
    topics: Vec<String>,
    /// "earliest" or "latest" (default): where to start without a committed offset.
    start: Option<String>,
    session_timeout_ms: Option<u64>,
    client_id: Option<String>,
}

/// Where a consumer without a committed offset starts: `latest` unless told `earliest`, the one
/// rule of every consumer that lives on the server (as Kafka clients' `auto.offset.reset`).
fn start_at(s: Option<&str>) -> ApiResult<StartAt> {
    match s {
        None | Some("latest") => Ok(StartAt::Latest),
        Some("earliest") => Ok(StartAt::Earliest),
        Some(other) => Err(ApiError::bad_request(format!(
            "`start`: {other:?} is not \"earliest\" or \"latest\""
        ))),
    }
}

fn positions(a: &[(String, u32, u64)]) -> Vec<Value> {
    a.iter()
        .map(|(t, p, o)| json!({"topic": t, "partition": p, "offset": o}))
        .collect()
}

async fn run_instance(
    mut c: GroupConsumer,
    mut rx: mpsc::Receiver<Cmd>,
    idle: Duration,
    key: (String, String),
    app: App,
    _slot: Slot,
) {
    // A deadline, not a sleep re-created on each turn: the heartbeat tick below must not keep
    // pushing the idle timeout back (only a command does).
    let mut idle_at = tokio::time::Instant::now() + idle;
    loop {
        let cmd = tokio::select! {
            cmd = rx.recv() => cmd,
            _ = tokio::time::sleep_until(idle_at) => None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if c.tick().await.is_err() {
                    break;
                }
                continue;
            }
        };
        match cmd {
            Some(Cmd::Poll {
                max,
                wait,
                reader,
                reply,
            }) => match checked_poll(&mut c, &app, &reader, &key.0, max, wait).await {
                Ok(evs) => {
                    let _ = reply.send(Ok(evs));
                }
                Err(Denied::Refuse(e)) => {
                    let _ = reply.send(Err(e));
                }
                Err(Denied::Close(e)) => {
                    let _ = reply.send(Err(e));
                    break;
                }
            },
            Some(Cmd::Commit { reader, reply }) => {
                let r = match reader.check_assigned(&app, &key.0, &c.assignment()) {
                    Ok(()) => c.commit().await.map(|_| c.assignment()).map_err(Into::into),
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Some(Cmd::Describe { reply }) => {
                let _ = reply.send(Ok((
                    c.member_id().to_string(),
                    c.generation(),
                    c.assignment(),
                )));
            }
            Some(Cmd::Close { reply }) => {
                app.consumers
                    .map
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                let _ = reply.send(c.leave().map_err(Into::into));
                return;
            }
            None => break,
        }
        // Idle time counts from the end of the last command (a long poll is use, not idleness).
        idle_at = tokio::time::Instant::now() + idle;
    }
    app.consumers
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    let _ = c.leave();
}

/// 403 unless the caller may READ every topic a group consumer names (Kafka's Fetch).
fn may_read(app: &App, caller: &Caller, topics: &[String]) -> ApiResult<()> {
    topics
        .iter()
        .try_for_each(|t| caller.require(app, Operation::Read, ResourceType::Topic, t))
}

/// Who reads through an instance or stream, authorized again on every use: READ on the group
/// and on each topic read (Kafka checks every Fetch), and a stored user that still exists (a
/// deleted user's reads end; a certificate's principal is no stored user and is not looked up).
#[derive(Clone)]
pub(crate) struct Reader {
    caller: Caller,
    stored: bool,
}

impl Reader {
    fn new(app: &App, caller: Caller) -> Self {
        let stored = (caller.user.as_deref())
            .is_some_and(|u| app.broker.auth().enabled() && app.broker.auth().users().exists(u));
        Self { caller, stored }
    }

    /// 403 unless the user still exists and may READ `group` (if any) and every topic.
    fn check<'a>(
        &self,
        app: &App,
        group: Option<&str>,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> ApiResult<()> {
        if let Some(user) = self.caller.user.as_deref().filter(|_| self.stored) {
            if !app.broker.auth().users().exists(user) {
                return Err(crate::authz::forbidden(format!(
                    "User:{user} no longer exists"
                )));
            }
        }
        if let Some(g) = group {
            self.caller
                .require(app, Operation::Read, ResourceType::Group, g)?;
        }
        topics.into_iter().try_for_each(|t| {
            self.caller
                .require(app, Operation::Read, ResourceType::Topic, t)
        })
    }

    /// [`Reader::check`] for the group and every topic of an assignment.
    fn check_assigned(&self, app: &App, group: &str, a: &[(String, u32, u64)]) -> ApiResult<()> {
        self.check(app, Some(group), a.iter().map(|(t, _, _)| t.as_str()))
    }
}

/// Why a checked poll read nothing for the caller.
enum Denied {
    /// Refused before reading: nothing read, no position moved.
    Refuse(ApiError),
    /// The group rebalanced during the poll's wait and events of a topic the caller may not
    /// READ were read: they are dropped and the instance leaves the group without committing
    /// (its positions moved past events it never delivered).
    Close(ApiError),
}

impl From<BrokerError> for Denied {
    fn from(e: BrokerError) -> Self {
        Denied::Refuse(e.into())
    }
}

/// One poll that reads only what the reader may READ now: the heartbeat first (so a rebalance
/// lands before the check), the group and the assignment checked (403 naming the topic, nothing
/// read), the poll, and its events checked again in case the group rebalanced while it waited.
async fn checked_poll(
    c: &mut GroupConsumer,
    app: &App,
    reader: &Reader,
    group: &str,
    max: usize,
    wait: Duration,
) -> Result<Vec<StoredEvent>, Denied> {
    c.tick().await?;
    reader
        .check_assigned(app, group, &c.assignment())
        .map_err(Denied::Refuse)?;
    let evs = c.poll(max, wait).await?;
    reader
        .check(app, Some(group), evs.iter().map(|e| e.topic.as_str()))
        .map_err(Denied::Close)?;
    Ok(evs)
}

fn options(start: StartAt, session_ms: Option<u64>, client_id: Option<String>) -> ConsumerOptions {
    let session_timeout = Duration::from_millis(session_ms.unwrap_or(10_000));
    ConsumerOptions {
        client_id: client_id.unwrap_or_else(|| "busbar-http".into()),
        client_host: "http".into(),
        session_timeout,
        rebalance_timeout: session_timeout.max(Duration::from_secs(30)),
        heartbeat_interval: Duration::from_millis(500),
        start,
    }
}

/// `POST /groups/{group}/consumers`: joins the group; answers once the instance has partitions.
#[utoipa::path(post, path = "/groups/{group}/consumers", operation_id = "create_consumer", tag = "groups", params(("group" = String, Path)),
    request_body = Create, responses(
        (status = 201, description = "Joined", body = crate::schemas::ConsumerInstance),
        (status = 400, description = "Bad body"),
        (status = 404, description = "No such topic"),
        (status = 413, description = "Body over `http.json_bytes_max`"),
        (status = 415, description = "Not application/json"),
        (status = 429, description = "`http.consumers_max` instances and streams held"),
        (status = 503, description = "Shutting down")))]
pub async fn create(
    State(app): State<App>,
    Path(group): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let req: Create = body::json_request(&headers, body, app.config.json_bytes_max).await?;
    may_read(&app, &caller, &req.topics)?;
    let start = start_at(req.start.as_deref())?;
    let slot = reserve(&app)?;
    let opts = options(start, req.session_timeout_ms, req.client_id);
    let c = GroupConsumer::join(app.broker.clone(), &group, req.topics, opts).await?;
    let id = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(app.consumers.next.fetch_add(1, Ordering::Relaxed));
        format!("c-{:016x}", h.finish())
    };
    let (tx, rx) = mpsc::channel(16);
    let key = (group.clone(), id.clone());
    let entry = Entry {
        tx,
        owner: caller.user.clone(),
    };
    let body = json!({"group": group, "consumer_id": id, "member_id": c.member_id(), "generation": c.generation(), "assignment": positions(&c.assignment())});
    app.consumers
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.clone(), entry);
    tokio::spawn(run_instance(
        c,
        rx,
        app.config.consumer_idle_timeout,
        key,
        app.clone(),
        slot,
    ));
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Sends a command to an instance: 404 when there is none, or when `caller` did not create it
/// (the same answer: another principal learns nothing of it).
async fn send<T>(
    app: &App,
    caller: &Caller,
    group: &str,
    id: &str,
    make: impl FnOnce(Reply<T>) -> Cmd,
) -> ApiResult<T> {
    let tx = app
        .consumers
        .map
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(group.to_string(), id.to_string()))
        .filter(|e| e.owner == caller.user)
        .map(|e| e.tx.clone());
    let tx = tx.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_consumer",
            format!("no consumer instance {id:?} in group {group:?} (closed or idle too long)"),
        )
    })?;
    let (reply, answer) = oneshot::channel();
    tx.send(make(reply)).await.map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_consumer",
            format!("consumer instance {id:?} has closed"),
        )
    })?;
    let r = answer.await.map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_consumer",
            format!("consumer instance {id:?} has closed"),
        )
    })?;
    r
}

/// A poll's answer (a struct, not a `Value`, so values keep their JSON text).
#[derive(Serialize)]
struct Polled<'a> {
    events: Vec<EventView<'a>>,
}

/// `GET /groups/{group}/consumers/{id}/events?max=&wait_ms=&encoding=`
#[utoipa::path(get, path = "/groups/{group}/consumers/{consumer}/events", operation_id = "poll_consumer", tag = "groups",
    params(("group" = String, Path), ("consumer" = String, Path, description = "The `consumer_id` the create answered"),
        ("max" = Option<u32>, Query, description = "1..=10000, default 100"),
        ("wait_ms" = Option<u64>, Query,
            description = "Wait for events up to this long (at most broker.fetch_wait_max_ms)"),
        ("decode" = Option<String>, Query, description = "`schema`: framed keys and values with a \
            registered schema are shown decoded, with `key_schema_id` / `value_schema_id`"),
        ("encoding" = Option<String>, Query, description = "auto (default), json, utf8 or base64")),
    responses(
        (status = 200, description = "Events", body = crate::schemas::Polled),
        (status = 400, description = "Bad query parameter"),
        (status = 404, description = "No such consumer instance (closed or idle too long)"),
        (status = 409, description = "The group is rebalancing")))]
pub async fn poll(
    State(app): State<App>,
    Path((group, id)): Path<(String, String)>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    only_params(&q, &["max", "wait_ms", "decode", Encoding::PARAM])?;
    let encoding = Encoding::from_query(&q)?;
    let decode = schema_codec::wants_decode(&q)?;
    if decode {
        // Refused before the poll: events polled count as consumed at the next commit.
        schema_codec::render(&app, &[], encoding, true)?;
    }
    let max = query_int(&q, "max", 1, 10_000)?.unwrap_or(100) as usize;
    let wait_max = app.broker.config().fetch_wait_max.as_millis() as i64;
    let wait = Duration::from_millis(query_int(&q, "wait_ms", 0, wait_max)?.unwrap_or(0) as u64);
    let reader = Reader::new(&app, caller.clone());
    let events = send(&app, &caller, &group, &id, |reply| Cmd::Poll {
        max,
        wait,
        reader,
        reply,
    })
    .await?;
    let events = schema_codec::render(&app, &events, encoding, decode)?;
    Ok(Json(Polled { events }).into_response())
}

/// `POST /groups/{group}/consumers/{id}/commit`: commits the positions of everything polled.
#[utoipa::path(post, path = "/groups/{group}/consumers/{consumer}/commit", operation_id = "commit_consumer", tag = "groups",
    params(("group" = String, Path), ("consumer" = String, Path, description = "The `consumer_id` the create answered")), responses(
        (status = 200, description = "Committed", body = crate::schemas::Committed),
        (status = 404, description = "No such consumer instance"),
        (status = 409, description = "The group is rebalancing"),
        (status = 503, description = "Shutting down"),
        (status = 507, description = "Could not be stored durably (disk full or storage offline); nothing changed")))]
pub async fn commit(
    State(app): State<App>,
    Path((group, id)): Path<(String, String)>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let reader = Reader::new(&app, caller.clone());
    let committed = send(&app, &caller, &group, &id, |reply| Cmd::Commit {
        reader,
        reply,
    })
    .await?;
    Ok(Json(json!({ "committed": positions(&committed) })))
}

/// `GET /groups/{group}/consumers/{id}`: member id, generation, partitions and positions.
#[utoipa::path(get, path = "/groups/{group}/consumers/{consumer}", operation_id = "describe_consumer", tag = "groups",
    params(("group" = String, Path), ("consumer" = String, Path, description = "The `consumer_id` the create answered")), responses(
        (status = 200, description = "The instance", body = crate::schemas::ConsumerInstance),
        (status = 404, description = "No such consumer instance")))]
pub async fn describe(
    State(app): State<App>,
    Path((group, id)): Path<(String, String)>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    let (member, generation, a) =
        send(&app, &caller, &group, &id, |reply| Cmd::Describe { reply }).await?;
    Ok(Json(
        json!({"group": group, "consumer_id": id, "member_id": member, "generation": generation, "assignment": positions(&a)}),
    ))
}

/// `DELETE /groups/{group}/consumers/{id}`: leaves the group.
#[utoipa::path(delete, path = "/groups/{group}/consumers/{consumer}", operation_id = "close_consumer", tag = "groups",
    params(("group" = String, Path), ("consumer" = String, Path, description = "The `consumer_id` the create answered")), responses(
        (status = 204, description = "Left the group"),
        (status = 404, description = "No such consumer instance")))]
pub async fn close(
    State(app): State<App>,
    Path((group, id)): Path<(String, String)>,
    caller: Caller,
) -> ApiResult<StatusCode> {
    send(&app, &caller, &group, &id, |reply| Cmd::Close { reply }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long a stream waits for events before it authorizes its reader again.
const RECHECK: Duration = Duration::from_secs(1);

fn sse_event(v: &EventView<'_>) -> SseEvent {
    let e = v.event;
    SseEvent::default()
        .id(format!("{}/{}/{}", e.topic, e.partition, e.offset))
        .event("event")
        .data(v.to_json())
}

/// The SSE items of a batch (decoded when asked); a batch that cannot be shown ends the stream
/// with an error event.
fn sse_items(
    app: &App,
    evs: &[StoredEvent],
    encoding: Encoding,
    decode: bool,
) -> (Vec<Result<SseEvent, Infallible>>, bool) {
    match schema_codec::render(app, evs, encoding, decode) {
        Ok(views) => (views.iter().map(|v| Ok(sse_event(v))).collect(), false),
        Err(e) => (vec![Ok(error_event(e))], true),
    }
}

fn error_event(e: impl Into<ApiError>) -> SseEvent {
    let api: ApiError = e.into();
    SseEvent::default()
        .event("error")
        .data(json!({"error": {"code": api.code, "message": api.message}}).to_string())
}

/// `GET /topics/{topic}/partitions/{partition}/stream?offset=|start=&encoding=`: every event from
/// the offset, or from `start` (`latest`, the default: the end; `earliest`: the log start), and
/// then new ones as they arrive.
#[utoipa::path(get, path = "/topics/{topic}/partitions/{partition}/stream", operation_id = "stream_partition", tag = "topics",
    description = "Server-Sent Events: `event: event` with an event as `data` (as reads show \
        it) and `id` topic/partition/offset; `event: error` ends the stream.",
    params(("topic" = String, Path), ("partition" = u32, Path),
        ("offset" = Option<u64>, Query, description = "Default: as `start`"),
        ("start" = Option<String>, Query,
            description = "latest (default: new events only) or earliest (from the log start)"),
        ("decode" = Option<String>, Query, description = "`schema`: framed keys and values with a \
            registered schema are shown decoded, with `key_schema_id` / `value_schema_id`"),
        ("encoding" = Option<String>, Query, description = "auto (default), json, utf8 or base64")),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad query parameter"),
        (status = 404, description = "No such topic or partition"),
        (status = 416, description = "Offset out of range"),
        (status = 429, description = "`http.consumers_max` instances and streams held")))]
pub async fn stream_partition(
    State(app): State<App>,
    Path((topic, partition)): Path<(String, String)>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    only_params(&q, &["offset", "start", "decode", Encoding::PARAM])?;
    let encoding = Encoding::from_query(&q)?;
    let decode = schema_codec::wants_decode(&q)?;
    if decode {
        schema_codec::render(&app, &[], encoding, true)?;
    }
    let p = partition_param(&partition)?;
    let from = start_at(q.get("start").map(String::as_str))?;
    app.broker.prepare_read(&topic, p).await;
    let (start, hw) = app.broker.offsets_of(&topic, p)?;
    let offset = match (query_int(&q, "offset", 0, i64::MAX)?, from) {
        (Some(_), _) if q.contains_key("start") => {
            return Err(ApiError::bad_request("give `offset` or `start`, not both"))
        }
        (Some(o), _) => o as u64,
        (None, StartAt::Earliest) => start,
        (None, StartAt::Latest) => hw,
    };
    if offset < start || offset > hw {
        return Err(BrokerError::OffsetOutOfRange {
            offset,
            start,
            end: hw,
        }
        .into());
    }
    let slot = reserve(&app)?;
    let reader = Reader::new(&app, caller);
    let state = (app.broker.clone(), topic, p, offset, false);
    let s = stream::unfold(
        state,
        move |(broker, topic, p, offset, done): (Arc<Broker>, String, i64, u64, bool)| {
            let _held_for_the_stream = &slot;
            let (app, reader) = (app.clone(), reader.clone());
            async move {
                if done {
                    return None;
                }
                if let Err(e) = reader.check(&app, None, [topic.as_str()]) {
                    let end = (broker, topic, p, offset, true);
                    return Some((stream::iter(vec![Ok(error_event(e))]), end));
                }
                match broker
                    .read_events_next(&topic, p, offset, 500, RECHECK)
                    .await
                {
                    Ok((evs, next)) => {
                        let (items, done) = sse_items(&app, &evs, encoding, decode);
                        Some((stream::iter(items), (broker, topic, p, next, done)))
                    }
                    Err(e) => Some((
                        stream::iter(vec![Ok(error_event(e))]),
                        (broker, topic, p, offset, true),
                    )),
                }
            }
        },
    );
    Ok(Sse::new(futures_util::StreamExt::flatten(s)).keep_alive(KeepAlive::default()))
}

/// `GET /groups/{group}/stream?topics=a,b&start=earliest|latest&encoding=`: joins the group for the life of
/// the stream; a batch is committed when the next one is requested (at-least-once).
#[utoipa::path(get, path = "/groups/{group}/stream", operation_id = "stream_group", tag = "groups",
    description = "Server-Sent Events as a group member for the stream's life: `event: event` \
        with an event as `data`; a batch is committed when the next is requested.",
    params(("group" = String, Path),
        ("topics" = String, Query, description = "Comma-separated topics"),
        ("start" = Option<String>, Query,
            description = "earliest or latest: where to start without a committed offset"),
        ("decode" = Option<String>, Query, description = "`schema`: framed keys and values with a \
            registered schema are shown decoded, with `key_schema_id` / `value_schema_id`"),
        ("encoding" = Option<String>, Query, description = "auto (default), json, utf8 or base64")),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad query parameter"),
        (status = 404, description = "No such topic"),
        (status = 429, description = "`http.consumers_max` instances and streams held"),
        (status = 503, description = "Shutting down")))]
pub async fn stream_group(
    State(app): State<App>,
    Path(group): Path<String>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    only_params(&q, &["topics", "start", "decode", Encoding::PARAM])?;
    let encoding = Encoding::from_query(&q)?;
    let decode = schema_codec::wants_decode(&q)?;
    if decode {
        schema_codec::render(&app, &[], encoding, true)?;
    }
    let topics: Vec<String> = q
        .get("topics")
        .map(|t| {
            t.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if topics.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter `topics` (comma-separated) is required",
        ));
    }
    may_read(&app, &caller, &topics)?;
    let start = start_at(q.get("start").map(String::as_str))?;
    let slot = reserve(&app)?;
    let reader = Reader::new(&app, caller);
    let c = GroupConsumer::join(
        app.broker.clone(),
        &group,
        topics,
        options(start, None, Some("busbar-sse".into())),
    )
    .await?;
    let s = stream::unfold(
        (Some(c), false),
        move |(c, polled): (Option<GroupConsumer>, bool)| {
            let _held_for_the_stream = &slot;
            let (app, reader, group) = (app.clone(), reader.clone(), group.clone());
            async move {
                let mut c = c?;
                let end =
                    |e: ApiError| Some((stream::iter(vec![Ok(error_event(e))]), (None, false)));
                // Checked before the commit too: a caller that lost READ commits nothing.
                if let Err(e) = c.tick().await {
                    return end(e.into());
                }
                if let Err(e) = reader.check_assigned(&app, &group, &c.assignment()) {
                    return end(e);
                }
                if polled {
                    if let Err(e) = c.commit().await {
                        return end(e.into());
                    }
                }
                match checked_poll(&mut c, &app, &reader, &group, 500, RECHECK).await {
                    Ok(evs) => {
                        let (items, failed) = sse_items(&app, &evs, encoding, decode);
                        let polled = !items.is_empty();
                        Some((stream::iter(items), (Some(c).filter(|_| !failed), polled)))
                    }
                    Err(Denied::Refuse(e) | Denied::Close(e)) => end(e),
                }
            }
        },
    );
    Ok(Sse::new(futures_util::StreamExt::flatten(s)).keep_alive(KeepAlive::default()))
}
