//! The schema registry's REST API, Confluent's exactly (paths, `application/vnd.schemaregistry.v1+json`,
//! `{"error_code","message"}` bodies and codes, Python's `True`/`False` query booleans, `%2F` in
//! subjects, the trailing-slash compatibility path, `compatibilityLevel` on read and
//! `compatibility` on write). It translates to `busbar_schema::Registry` calls and decides nothing.
//!
//! Served two ways: on its own listener ([`serve`], `schema_registry.addr`) and under
//! `/schema-registry/` on the main API ([`fallback`]: the main router's fallback hands those paths
//! here, so the API's OpenAPI document stays busbar's own). Both apply the same authentication
//! (`auth::check`) and the same authorization ([`access`]: the SUBJECT resource, READ, WRITE,
//! DELETE and ALTER, lists and schema ids filtered by what the caller may READ). Every change,
//! denied or not, is an audit line naming the subject (listener `schema-registry`, or `http`
//! under the main API).

mod access;

use crate::App;
use access::Caller;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use busbar_broker::audit::AuditEvent;
use busbar_broker::auth::acl::{Operation, ResourceType};
use busbar_broker::Broker;
use busbar_schema::model::parse_version;
use busbar_schema::{Compatibility, Mode, Registry, SchemaError, SchemaInput, Version};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The media type of every answer.
pub const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Where the registry is mounted on the main API.
pub const PREFIX: &str = "/schema-registry";

/// What the registry's handlers share.
#[derive(Clone)]
pub struct Sr {
    registry: Arc<Registry>,
    broker: Arc<Broker>,
    listener: &'static str,
}

type Q = Query<HashMap<String, String>>;

/// An answer in the registry's media type, with what the audit line of a change says of it.
pub struct Answer(StatusCode, Value, Option<String>);

/// The response extension carrying an answer's audit detail to [`guard`].
#[derive(Debug, Clone)]
struct Detail(String);

impl Answer {
    /// This answer with `detail` for its audit line (changes only: other lines are not written).
    fn noted(mut self, detail: String) -> Self {
        self.2 = Some(detail);
        self
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = (self.0, self.1.to_string()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        if let Some(d) = self.2 {
            r.extensions_mut().insert(Detail(d));
        }
        r
    }
}

fn ok(v: Value) -> Answer {
    Answer(StatusCode::OK, v, None)
}

fn error(status: u16, code: u32, message: impl Into<String>) -> Answer {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = message.into();
    let body = json!({"error_code": code, "message": message});
    Answer(status, body, Some(message))
}

/// 403 with Confluent's code for an authorization failure.
fn forbidden(message: String) -> Answer {
    error(403, 40301, message)
}

impl From<SchemaError> for Answer {
    fn from(e: SchemaError) -> Self {
        error(e.status(), e.code(), e.to_string())
    }
}

type Res = Result<Answer, Answer>;

/// A query boolean as Java (`true`) or Python (`True`) sends it; absent is false.
fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn version_arg(v: &str) -> Result<Option<u32>, Answer> {
    parse_version(v).map_err(Answer::from)
}

fn id_arg(id: &str) -> Result<u32, Answer> {
    id.parse::<u32>().map_err(|_| {
        error(
            404,
            40403,
            format!("Schema {} not found", busbar_schema::shown(id)),
        )
    })
}

fn body_json(body: &Bytes) -> Result<Value, Answer> {
    if body.is_empty() {
        return Err(error(400, 400, "a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| error(400, 400, format!("malformed JSON body: {e}")))
}

fn schema_input(body: &Bytes) -> Result<SchemaInput, Answer> {
    let mut v = body_json(body)?;
    if let Some(fields) = v.as_object_mut() {
        // Null optional fields read as absent, as Confluent's entities do.
        fields.retain(|_, value| !value.is_null());
    }
    if !v.is_object() || !v["schema"].is_string() {
        return Err(error(
            422,
            42201,
            "Invalid schema: the body needs a string \"schema\"",
        ));
    }
    serde_json::from_value(v).map_err(|e| error(422, 42201, format!("Invalid schema: {e}")))
}

/// A version as Confluent answers it: `schemaType` only when not AVRO, `references` when any.
fn version_json(v: &Version) -> Value {
    let mut out =
        json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema});
    schema_fields(&mut out, v.schema_type, &v.references);
    if let Some(m) = &v.metadata {
        out["metadata"] = m.clone();
    }
    if let Some(r) = &v.rule_set {
        out["ruleSet"] = r.clone();
    }
    if v.deleted {
        out["deleted"] = json!(true);
    }
    out
}

fn schema_fields(
    out: &mut Value,
    ty: busbar_schema::SchemaType,
    refs: &[busbar_schema::Reference],
) {
    if ty != busbar_schema::SchemaType::Avro {
        out["schemaType"] = json!(ty.as_str());
    }
    if !refs.is_empty() {
        out["references"] = json!(refs);
    }
}

async fn root() -> Answer {
    ok(json!({}))
}

async fn types() -> Answer {
    ok(json!(["JSON", "PROTOBUF", "AVRO"]))
}

async fn contexts() -> Answer {
    ok(json!(["."]))
}

/// 403 unless the caller may READ a subject holding schema `id` (Confluent's SCHEMA_READ);
/// an unknown id is 40403 first.
fn require_id(s: &Sr, caller: &Caller, id: u32) -> Result<(), Answer> {
    let holders = s.registry.holders(id, true)?;
    if holders
        .iter()
        .any(|(subject, _)| caller.may_subject(&s.broker, Operation::Read, subject))
    {
        return Ok(());
    }
    Err(forbidden(format!(
        "{} may not READ any subject holding schema {id} (no ACL allows it)",
        caller.principal()
    )))
}

/// The holders of schema `id` the caller may READ; 403 when it may READ none of them.
fn readable_holders(
    s: &Sr,
    caller: &Caller,
    id: u32,
    deleted: bool,
) -> Result<Vec<(String, u32)>, Answer> {
    require_id(s, caller, id)?;
    let mut holders = s.registry.holders(id, deleted)?;
    holders.retain(|(subject, _)| caller.may_subject(&s.broker, Operation::Read, subject));
    Ok(holders)
}

async fn schema_by_id(
    State(s): State<Sr>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
    let id = id_arg(&id)?;
    let found = s.registry.by_id(id)?;
    require_id(&s, &caller, id)?;
    let mut text = found.schema;
    // `format=serialized`: a PROTOBUF schema as a base64 FileDescriptorProto, whatever form it
    // was registered in (confluent-kafka-python's deserializer asks for it); other formats and
    // types answer the schema as stored, as Confluent does.
    if q.get("format").map(String::as_str) == Some("serialized")
        && found.schema_type == busbar_schema::SchemaType::Protobuf
    {
        if let busbar_schema::schema::Parsed::Protobuf(p) = s.registry.parsed_by_id(id)?.parsed {
            text = p.serialized();
        }
    }
    let mut out = json!({"schema": text});
    schema_fields(&mut out, found.schema_type, &found.references);
    Ok(ok(out))
}

async fn raw_schema_by_id(State(s): State<Sr>, caller: Caller, Path(id): Path<String>) -> Res {
    let id = id_arg(&id)?;
    let found = s.registry.by_id(id)?;
    require_id(&s, &caller, id)?;
    Ok(ok(
        serde_json::from_str(&found.schema).unwrap_or(Value::String(found.schema))
    ))
}

async fn subjects_of_id(
    State(s): State<Sr>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
    let holders = readable_holders(&s, &caller, id_arg(&id)?, flag(&q, "deleted"))?;
    let mut subjects: Vec<String> = holders.into_iter().map(|(s, _)| s).collect();
    subjects.dedup();
    Ok(ok(json!(subjects)))
}

async fn versions_of_id(
    State(s): State<Sr>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Q,
) -> Res {
    let holders = readable_holders(&s, &caller, id_arg(&id)?, flag(&q, "deleted"))?;
    let list: Vec<Value> = (holders.into_iter())
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(ok(json!(list)))
}

/// The subjects the caller may DESCRIBE (as Kafka's Metadata hides topics).
async fn subjects(State(s): State<Sr>, caller: Caller, Query(q): Q) -> Answer {
    let prefix = q.get("subjectPrefix").map_or("", String::as_str);
    let deleted = flag(&q, "deleted") || flag(&q, "deletedOnly");
    let mut list = s.registry.subjects(deleted, prefix);
    if flag(&q, "deletedOnly") {
        let live = s.registry.subjects(false, prefix);
        list.retain(|x| !live.contains(x));
    }
    list.retain(|x| caller.may_subject(&s.broker, Operation::Describe, x));
    ok(json!(list))
}

async fn versions(State(s): State<Sr>, Path(subject): Path<String>, Query(q): Q) -> Res {
    Ok(ok(json!(s
        .registry
        .versions(&subject, flag(&q, "deleted"))?)))
}

async fn register(
    State(s): State<Sr>,
    caller: Caller,
    Path(subject): Path<String>,
    body: Bytes,
) -> Res {
    let input = schema_input(&body)?;
    // A reference makes the registry read the subject it names: the caller must be able to.
    for r in &input.references {
        caller
            .require(
                &s.broker,
                &[Operation::Read],
                ResourceType::Subject,
                &r.subject,
            )
            .map_err(forbidden)?;
    }
    let r = s.registry.register(&subject, input).await?;
    let v = &r.version;
    let detail = format!("version {}, id {}", v.version, v.id);
    Ok(ok(version_json(v)).noted(detail))
}

async fn lookup(State(s): State<Sr>, Path(subject): Path<String>, Query(q): Q, body: Bytes) -> Res {
    let input = schema_input(&body)?;
    let v = s.registry.lookup(&subject, &input, flag(&q, "deleted"))?;
    Ok(ok(version_json(&v)))
}

/// `soft` or `permanent`, for audit lines.
fn how(q: &HashMap<String, String>) -> &'static str {
    if flag(q, "permanent") {
        "permanent"
    } else {
        "soft"
    }
}

async fn delete_subject(State(s): State<Sr>, Path(subject): Path<String>, Query(q): Q) -> Res {
    let gone = (s.registry)
        .delete_subject(&subject, flag(&q, "permanent"))
        .await?;
    let detail = format!("{} delete of versions {gone:?}", how(&q));
    Ok(ok(json!(gone)).noted(detail))
}

async fn get_version(
    State(s): State<Sr>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> Res {
    let v = s
        .registry
        .version(&subject, version_arg(&v)?, flag(&q, "deleted"))?;
    Ok(ok(version_json(&v)))
}

async fn raw_version(
    State(s): State<Sr>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> Res {
    let v = s
        .registry
        .version(&subject, version_arg(&v)?, flag(&q, "deleted"))?;
    Ok(ok(
        serde_json::from_str(&v.schema).unwrap_or(Value::String(v.schema))
    ))
}

async fn referenced_by(State(s): State<Sr>, Path((subject, v)): Path<(String, String)>) -> Res {
    Ok(ok(json!(s
        .registry
        .referenced_by(&subject, version_arg(&v)?)?)))
}

async fn delete_version(
    State(s): State<Sr>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
) -> Res {
    let n = s
        .registry
        .delete_version(&subject, version_arg(&v)?, flag(&q, "permanent"))
        .await?;
    Ok(ok(json!(n)).noted(format!("{} delete of version {n}", how(&q))))
}

fn compat_answer(messages: Vec<String>, q: &HashMap<String, String>) -> Answer {
    let mut out = json!({"is_compatible": messages.is_empty()});
    if flag(q, "verbose") {
        out["messages"] = json!(messages);
    }
    ok(out)
}

async fn compat_version(
    State(s): State<Sr>,
    Path((subject, v)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> Res {
    let input = schema_input(&body)?;
    let messages = s.registry.check(&subject, Some(version_arg(&v)?), &input)?;
    Ok(compat_answer(messages, &q))
}

async fn compat_all(
    State(s): State<Sr>,
    Path(subject): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Res {
    let input = schema_input(&body)?;
    Ok(compat_answer(s.registry.check(&subject, None, &input)?, &q))
}

fn field(body: &Bytes, name: &str) -> Result<String, Answer> {
    let v = body_json(body)?;
    v[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| error(422, 422, format!("the body needs a string \"{name}\"")))
}

async fn get_config(State(s): State<Sr>, subject: Option<Path<String>>, Query(q): Q) -> Res {
    let subject = subject.map(|Path(s)| s);
    let level = s
        .registry
        .config(subject.as_deref(), flag(&q, "defaultToGlobal"))?;
    Ok(ok(json!({"compatibilityLevel": level.as_str()})))
}

async fn put_config(State(s): State<Sr>, subject: Option<Path<String>>, body: Bytes) -> Res {
    let subject = subject.map(|Path(s)| s);
    let level = Compatibility::parse(&field(&body, "compatibility")?)?;
    s.registry.set_config(subject.as_deref(), level).await?;
    let detail = format!("compatibility set to {}", level.as_str());
    Ok(ok(json!({"compatibility": level.as_str()})).noted(detail))
}

async fn delete_config(State(s): State<Sr>, subject: Option<Path<String>>) -> Res {
    let subject = subject.map(|Path(s)| s);
    let old = s.registry.delete_config(subject.as_deref()).await?;
    let detail = format!("compatibility {} deleted", old.as_str());
    Ok(ok(json!({"compatibilityLevel": old.as_str()})).noted(detail))
}

async fn get_mode(State(s): State<Sr>, subject: Option<Path<String>>, Query(q): Q) -> Res {
    let subject = subject.map(|Path(s)| s);
    let mode = s
        .registry
        .mode(subject.as_deref(), flag(&q, "defaultToGlobal"))?;
    Ok(ok(json!({"mode": mode.as_str()})))
}

async fn put_mode(
    State(s): State<Sr>,
    subject: Option<Path<String>>,
    Query(q): Q,
    body: Bytes,
) -> Res {
    let subject = subject.map(|Path(s)| s);
    let mode = Mode::parse(&field(&body, "mode")?)?;
    s.registry
        .set_mode(subject.as_deref(), mode, flag(&q, "force"))
        .await?;
    let detail = format!("mode set to {}", mode.as_str());
    Ok(ok(json!({"mode": mode.as_str()})).noted(detail))
}

async fn delete_mode(State(s): State<Sr>, subject: Option<Path<String>>) -> Res {
    let subject = subject.map(|Path(s)| s);
    let old = s.registry.delete_mode(subject.as_deref()).await?;
    let detail = format!("mode {} deleted", old.as_str());
    Ok(ok(json!({"mode": old.as_str()})).noted(detail))
}

async fn no_route() -> Answer {
    error(404, 404, "HTTP 404 Not Found")
}

async fn no_method() -> Answer {
    error(405, 405, "HTTP 405 Method Not Allowed")
}

/// The registry's routes over `state`, without authentication (the caller adds it).
fn routes(state: Sr) -> Router {
    let subject = "/subjects/{subject}";
    let version = "/subjects/{subject}/versions/{version}";
    Router::new()
        .route("/", get(root).post(root))
        .route("/schemas/types", get(types))
        .route("/contexts", get(contexts))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/subjects", get(subjects))
        .route(subject, post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(version, get(get_version).delete(delete_version))
        .route(&format!("{version}/schema"), get(raw_version))
        .route(&format!("{version}/referencedby"), get(referenced_by))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compat_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/",
            post(compat_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compat_version),
        )
        .route(
            "/config",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route(
            "/config/{subject}",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route("/mode", get(get_mode).put(put_mode).delete(delete_mode))
        .route(
            "/mode/{subject}",
            get(get_mode).put(put_mode).delete(delete_mode),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), timed))
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .with_state(state)
}

/// Most bytes of another layer's error body read to build the registry's error message.
const FOREIGN_ERROR_BYTES_MAX: usize = 64 << 10;

/// Every error answer in the registry's shape: an error another layer made (busbar's
/// authentication 401, axum's 413 for a body over its limit, its 400 for a path that is not
/// UTF-8) becomes `{"error_code": <status>, "message": ...}` in the registry's media type, as
/// Confluent answers errors it has no code of its own for; its other headers (a
/// `WWW-Authenticate` challenge) are kept. The registry's own answers pass unchanged.
pub async fn confluent_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let media = resp.headers().get(header::CONTENT_TYPE);
    if resp.status().as_u16() < 400 || media.is_some_and(|m| m == MEDIA_TYPE) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, FOREIGN_ERROR_BYTES_MAX)
        .await
        .unwrap_or_default();
    let message = match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => v["error"]["message"].as_str().map(str::to_string),
        Err(_) => Some(String::from_utf8_lossy(&bytes).trim().to_string()),
    }
    .filter(|m| !m.is_empty())
    .or_else(|| parts.status.canonical_reason().map(str::to_string))
    .unwrap_or_default();
    let body = json!({"error_code": parts.status.as_u16(), "message": message}).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// [`confluent_errors`] for requests under [`PREFIX`] on the main API (whose authentication
/// answers before the registry's router is reached); other paths pass unchanged.
pub async fn confluent_errors_under_prefix(req: Request, next: Next) -> Response {
    let under = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .is_some_and(|r| r.is_empty() || r.starts_with('/'));
    match under {
        true => confluent_errors(req, next).await,
        false => next.run(req).await,
    }
}

/// The `{subject}` path parameter of a route that has one (percent-decoded, as the handlers
/// see it).
async fn subject_of(
    parts: &mut axum::http::request::Parts,
    s: &Sr,
) -> Result<Option<String>, Answer> {
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    if !route.is_some_and(|r| r.contains("{subject}")) {
        return Ok(None);
    }
    match Path::<HashMap<String, String>>::from_request_parts(parts, s).await {
        Ok(Path(mut params)) => Ok(params.remove("subject")),
        Err(e) => Err(error(400, 400, e.body_text())),
    }
}

/// `busbar_request_latency_seconds{api="schema_registry",request="METHOD /route/{param}"}`:
/// the registry's route template (the same on both mounts), never the path a client sent.
async fn timed(State(s): State<Sr>, req: Request, next: Next) -> Response {
    crate::metrics::time_route(&s.broker, "schema_registry", req, next).await
}

/// Authorization by [`access::TABLE`] (deny by default, nothing checked while auth is off) and
/// the audit line of every change, denied ones included: `SUBJECT:<subject>` (or the CLUSTER
/// for the registry-wide config and mode) as the resource, the status as the outcome, what
/// changed or why not as the detail.
async fn guard(State(s): State<Sr>, req: Request, next: Next) -> Response {
    let route = (req.extensions().get::<MatchedPath>())
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let enabled = s.broker.auth().enabled();
    let Some(row) = access::row_of(req.method(), &route) else {
        if !enabled {
            return next.run(req).await;
        }
        let why = format!(
            "{} {route} has no authorization rule; refused",
            req.method()
        );
        return forbidden(why).into_response();
    };
    let operation = format!("{} {PREFIX}{route}", req.method());
    let (mut parts, body) = req.into_parts();
    let subject = match subject_of(&mut parts, &s).await {
        Ok(subject) => subject,
        Err(e) => return e.into_response(),
    };
    let caller = Caller::of(&parts.extensions);
    let peer = (parts.extensions.get::<ConnectInfo<SocketAddr>>()).map(|c| c.0);
    let resource = access::resource(row.need, subject.as_deref())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let verdict = match enabled {
        true => caller.check(&s.broker, row.need, subject.as_deref()),
        false => Ok(()),
    };
    let resp = match verdict {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(why) => forbidden(why).into_response(),
    };
    let audit = s.broker.audit();
    if row.change && audit.enabled() {
        audit.record(AuditEvent {
            principal: caller.principal(),
            peer,
            listener: s.listener.into(),
            operation,
            resource,
            outcome: resp.status().as_u16().to_string(),
            detail: resp.extensions().get::<Detail>().map(|d| d.0.clone()),
        });
    }
    resp
}

/// The registry's router for the main API (no authentication: the main router has it).
pub fn mounted(registry: Arc<Registry>, broker: Arc<Broker>) -> Router {
    routes(Sr {
        registry,
        broker,
        listener: crate::audit::LISTENER,
    })
}

/// The main router's fallback: `/schema-registry/...` goes to the registry (when one runs),
/// anything else is the API's 404.
pub async fn fallback(State(app): State<App>, mut req: Request) -> Response {
    let path = req.uri().path();
    let Some(rest) = path
        .strip_prefix(PREFIX)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return crate::not_found_response();
    };
    let Some(router) = app.schema_registry.clone() else {
        return error(404, 404, "the schema registry is not enabled").into_response();
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    let pq = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    match pq.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return error(400, 400, "malformed path").into_response(),
    }
    let mut router = router;
    match tower_service::Service::call(&mut router, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Serves the registry alone on `listener` (`schema_registry.addr`), with the main API's
/// authentication and limits, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = Sr {
        registry,
        broker: app.broker.clone(),
        listener: "schema-registry",
    };
    let router = routes(state)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::auth::check_registry,
        ))
        .layer(axum::middleware::from_fn(confluent_errors));
    let config = app.config.clone();
    crate::accept::serve(listener, router, &config, shutdown).await
}
