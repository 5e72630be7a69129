//! Kafka's ACL model, as a pure in-memory decision: resources (TOPIC, GROUP, CLUSTER,
//! TRANSACTIONAL_ID, and busbar's own SUBSCRIPTION and SUBJECT), literal and prefixed patterns (`*` is the
//! literal wildcard), operations with their implied operations, ALLOW/DENY with DENY winning,
//! host filters, super users and `allow_if_no_acl`. Codes are Kafka's (`AclOperation.java`,
//! `ResourceType.java`, `PatternType.java`, `AclPermissionType.java`).
//!
//! [`AclSet::authorize`] is Kafka's `AclAuthorizer.authorize` for one action: a super user is
//! allowed; otherwise a matching DENY (same operation or ALL) denies; otherwise a matching ALLOW
//! (the operation, ALL, or an operation that implies it: READ/WRITE/DELETE/ALTER imply DESCRIBE,
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows; otherwise, when no ACL at all names the
//! resource and `allow_if_no_acl` is set, the action is allowed; else it is denied.
//! Storage and the wire APIs live elsewhere; this file decides.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// The principal of an unauthenticated client (a PLAINTEXT listener while auth is on).
pub const ANONYMOUS: &str = "ANONYMOUS";
/// busbar's own resource type code for subscriptions (Kafka uses 0..=7).
pub const SUBSCRIPTION_CODE: i8 = 100;
/// busbar's own resource type code for schema registry subjects (after [`SUBSCRIPTION_CODE`];
/// Kafka has no subject type, and Confluent keeps its registry ACLs outside Kafka's).
pub const SUBJECT_CODE: i8 = 101;

/// What an ACL is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    /// busbar's: a bus subscription, by name.
    Subscription,
    /// busbar's: a schema registry subject (`orders-value`), by name.
    Subject,
}

impl ResourceType {
    pub const ALL: [ResourceType; 6] = [
        Self::Topic,
        Self::Group,
        Self::Cluster,
        Self::TransactionalId,
        Self::Subscription,
        Self::Subject,
    ];

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::Subscription => SUBSCRIPTION_CODE,
            Self::Subject => SUBJECT_CODE,
        }
    }

    /// The type of a code (`None` for ANY, UNKNOWN and types busbar has no use for).
    pub fn of_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Kafka's name (`TOPIC`, ...), as the HTTP API and docs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Topic => "TOPIC",
            Self::Group => "GROUP",
            Self::Cluster => "CLUSTER",
            Self::TransactionalId => "TRANSACTIONAL_ID",
            Self::Subscription => "SUBSCRIPTION",
            Self::Subject => "SUBJECT",
        }
    }

    /// The type named `name` (case-insensitive).
    pub fn of_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// The name of Kafka's one cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// The exact name, or every name when the name is `*`.
    Literal,
    /// Every name starting with the name.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    pub fn of_code(code: i8) -> Option<Self> {
        match code {
            3 => Some(Self::Literal),
            4 => Some(Self::Prefixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Literal => "LITERAL",
            Self::Prefixed => "PREFIXED",
        }
    }

    pub fn of_name(name: &str) -> Option<Self> {
        [Self::Literal, Self::Prefixed]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// An operation on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    pub const ALL_OPS: [Operation; 11] = [
        Self::All,
        Self::Read,
        Self::Write,
        Self::Create,
        Self::Delete,
        Self::Alter,
        Self::Describe,
        Self::ClusterAction,
        Self::DescribeConfigs,
        Self::AlterConfigs,
        Self::IdempotentWrite,
    ];

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Self::All => 2,
            Self::Read => 3,
            Self::Write => 4,
            Self::Create => 5,
            Self::Delete => 6,
            Self::Alter => 7,
            Self::Describe => 8,
            Self::ClusterAction => 9,
            Self::DescribeConfigs => 10,
            Self::AlterConfigs => 11,
            Self::IdempotentWrite => 12,
        }
    }

    pub fn of_code(code: i8) -> Option<Self> {
        Self::ALL_OPS.into_iter().find(|o| o.code() == code)
    }

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Create => "CREATE",
            Self::Delete => "DELETE",
            Self::Alter => "ALTER",
            Self::Describe => "DESCRIBE",
            Self::ClusterAction => "CLUSTER_ACTION",
            Self::DescribeConfigs => "DESCRIBE_CONFIGS",
            Self::AlterConfigs => "ALTER_CONFIGS",
            Self::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }

    pub fn of_name(name: &str) -> Option<Self> {
        Self::ALL_OPS
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
    }

    /// Whether an ALLOW of `self` grants `wanted` (ALL grants everything; READ, WRITE, DELETE
    /// and ALTER grant DESCRIBE; ALTER_CONFIGS grants DESCRIBE_CONFIGS).
    pub fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` refuses `wanted` (only the operation itself or ALL).
    pub fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    pub fn of_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Self::Deny),
            3 => Some(Self::Allow),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Deny => "DENY",
            Self::Allow => "ALLOW",
        }
    }

    pub fn of_name(name: &str) -> Option<Self> {
        [Self::Deny, Self::Allow]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// One ACL: who (`User:alice`, `User:*`) may or may not do what, from where (`*` or one IP
/// address), on which resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// The bytes this ACL adds to a describe answer: its strings plus a fixed allowance for the
    /// codes and framing (Kafka's DescribeAcls or the HTTP API's JSON).
    pub fn answer_bytes(&self) -> usize {
        self.principal.len() + self.host.len() + self.resource_name.len() + 64
    }
}

/// A describe whose answer would pass `auth.acls_answer_bytes_max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerTooBig {
    /// ACLs matching the filter.
    pub count: usize,
    /// Their answer bytes.
    pub bytes: usize,
    /// The limit.
    pub bytes_max: usize,
}

impl std::fmt::Display for AnswerTooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ACLs match, about {} bytes to answer, over auth.acls_answer_bytes_max ({}): \
             narrow the filter",
            self.count, self.bytes, self.bytes_max
        )
    }
}

/// Longest resource name, principal or host in an ACL, bytes.
pub const ACL_FIELD_BYTES_MAX: usize = 1024;

/// Most bytes of a client's field quoted in an error message.
pub const SHOWN_BYTES_MAX: usize = 100;

/// `v` quoted for an error message: escaped, at most [`SHOWN_BYTES_MAX`] bytes of it (cut at a
/// character boundary, `...` marks the cut), so an answer never echoes a large field.
pub fn shown(v: &str) -> String {
    let mut end = v.len().min(SHOWN_BYTES_MAX);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < v.len() { "..." } else { "" };
    format!("{:?}{cut}", &v[..end])
}

impl AclBinding {
    /// Checks the fields a client sent: a `User:` principal (`User:*` for everyone), a host of
    /// `*` or an IP address, a non-empty bounded resource name, `kafka-cluster` for CLUSTER.
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in [
            ("resource name", &self.resource_name),
            ("principal", &self.principal),
            ("host", &self.host),
        ] {
            if v.len() > ACL_FIELD_BYTES_MAX {
                return Err(format!("{what} longer than {ACL_FIELD_BYTES_MAX} bytes"));
            }
        }
        let user = self
            .principal
            .strip_prefix("User:")
            .ok_or_else(|| format!("principal {} must be User:<name>", shown(&self.principal)))?;
        if user.is_empty() {
            return Err("principal User: names no user".into());
        }
        if self.resource_name.is_empty() {
            return Err("empty resource name".into());
        }
        if self.host != "*" && self.host.parse::<IpAddr>().is_err() {
            return Err(format!(
                "host {} is neither * nor an IP address",
                shown(&self.host)
            ));
        }
        if self.resource_type == ResourceType::Cluster
            && (self.resource_name != CLUSTER_NAME || self.pattern != PatternType::Literal)
        {
            return Err(format!("a CLUSTER ACL names the literal {CLUSTER_NAME}"));
        }
        Ok(())
    }

    /// Whether this ACL's pattern covers resource `name` of `ty`.
    pub fn covers(&self, ty: ResourceType, name: &str) -> bool {
        self.resource_type == ty
            && match self.pattern {
                PatternType::Literal => self.resource_name == "*" || self.resource_name == name,
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    /// Whether this ACL applies to `user` connecting from `host`.
    fn applies_to(&self, user: &str, host: IpAddr) -> bool {
        let who = self.principal.strip_prefix("User:").unwrap_or("");
        (who == "*" || who == user)
            && (self.host == "*"
                || self.host.parse::<IpAddr>().map(canonical_ip) == Ok(canonical_ip(host)))
    }
}

/// `ip` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how an IPv4 client appears on a
/// `[::]` listener) written as the IPv4 address, so host ACLs match either form.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A filter over ACLs (DescribeAcls, DeleteAcls): `None` matches any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    /// `None` is ANY; `Some(Match)` is [`PatternFilter::Match`].
    pub pattern: Option<PatternFilter>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

/// A filter's pattern type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Exactly this pattern type (names compared exactly).
    Exact(PatternType),
    /// Kafka's MATCH: every ACL that would apply to the named resource (literal equal, literal
    /// `*`, prefixes of the name).
    Match,
}

impl AclFilter {
    /// Whether `b` passes this filter.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, _) => true,
            (Some(n), Some(PatternFilter::Match)) => b.covers(b.resource_type, n),
            (Some(n), _) => &b.resource_name == n,
        };
        let pattern_ok = match self.pattern {
            None | Some(PatternFilter::Match) => true,
            Some(PatternFilter::Exact(p)) => b.pattern == p,
        };
        self.resource_type.is_none_or(|t| t == b.resource_type)
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// Why [`AclSet::authorize`] decided as it did (for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A super user.
    SuperUser,
    /// An ALLOW ACL matched.
    Allowed,
    /// No ACL names the resource and `allow_if_no_acl` is set.
    NoAclAllowed,
    /// A DENY ACL matched.
    Denied,
    /// No ALLOW ACL matched.
    NotAllowed,
}

impl Decision {
    pub fn allowed(self) -> bool {
        matches!(self, Self::SuperUser | Self::Allowed | Self::NoAclAllowed)
    }
}

/// Who asks: the user name (without `User:`; [`ANONYMOUS`] when unauthenticated) and address.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub user: &'a str,
    pub host: IpAddr,
}

/// The ACLs of one pattern, by principal's user name (`*` for `User:*`).
type Bucket = HashMap<String, Vec<usize>>;

/// Where the ACLs of one resource type are, by pattern: a check looks up the literal name, the
/// literal `*` ones and each prefix of the name, then the requester's and `User:*`'s ACLs in
/// each, so it costs about the name's length, not the number of ACLs.
#[derive(Debug, Clone, Default)]
struct TypeIndex {
    /// Literal names (not `*`).
    literal: HashMap<String, Bucket>,
    /// Literal `*`.
    wildcard: Bucket,
    /// Prefixed patterns.
    prefixed: HashMap<String, Bucket>,
    /// The distinct lengths (bytes) of the prefixes in `prefixed`.
    prefix_lens: BTreeSet<usize>,
}

impl TypeIndex {
    fn add(&mut self, i: usize, b: &AclBinding) {
        let name = b.resource_name.clone();
        let bucket = match b.pattern {
            PatternType::Literal if name == "*" => &mut self.wildcard,
            PatternType::Literal => self.literal.entry(name).or_default(),
            PatternType::Prefixed => {
                self.prefix_lens.insert(name.len());
                self.prefixed.entry(name).or_default()
            }
        };
        let who = b.principal.strip_prefix("User:").unwrap_or("");
        bucket.entry(who.to_string()).or_default().push(i);
    }

    /// The non-empty buckets of every pattern covering `name`.
    fn covering<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Bucket> + 'a {
        let prefixes = self
            .prefix_lens
            .range(..=name.len())
            .filter(|&&n| name.is_char_boundary(n))
            .filter_map(|&n| self.prefixed.get(&name[..n]));
        std::iter::once(&self.wildcard)
            .chain(self.literal.get(name))
            .chain(prefixes)
            .filter(|b| !b.is_empty())
    }
}

/// The resource name [`AclSet::allows_any`] authorizes first (Kafka's
/// `authorizeByResourceType` uses the same one).
pub const HYPOTHETICAL_NAME: &str = "hardcode";

/// Every ACL, indexed by resource type and pattern (see [`TypeIndex`]).
#[derive(Debug, Clone, Default)]
pub struct AclSet {
    acls: Vec<AclBinding>,
    index: HashMap<ResourceType, TypeIndex>,
}

impl AclSet {
    pub fn new(acls: Vec<AclBinding>) -> Self {
        let mut index: HashMap<ResourceType, TypeIndex> = HashMap::new();
        for (i, b) in acls.iter().enumerate() {
            index.entry(b.resource_type).or_default().add(i, b);
        }
        Self { acls, index }
    }

    fn buckets<'a>(&'a self, ty: ResourceType, name: &'a str) -> impl Iterator<Item = &'a Bucket> {
        self.index
            .get(&ty)
            .into_iter()
            .flat_map(move |t| t.covering(name))
    }

    /// The ACLs whose pattern covers resource `name` of type `ty` (found through the index).
    pub fn covering<'a>(
        &'a self,
        ty: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        self.buckets(ty, name)
            .flat_map(|b| b.values().flatten())
            .map(|&i| &self.acls[i])
    }

    /// Whether any ACL covers `name`, and those of them naming `user` or `User:*` (what a check
    /// visits: see [`TypeIndex`]).
    pub fn candidates<'a>(
        &'a self,
        ty: ResourceType,
        name: &'a str,
        user: &'a str,
    ) -> (bool, Vec<&'a AclBinding>) {
        let mut any = false;
        let mut out = Vec::new();
        for bucket in self.buckets(ty, name) {
            any = true;
            let mine = bucket.get(user).into_iter().flatten();
            let all = bucket
                .get("*")
                .filter(|_| user != "*")
                .into_iter()
                .flatten();
            out.extend(mine.chain(all).map(|&i| &self.acls[i]));
        }
        (any, out)
    }

    /// Every ACL.
    pub fn all(&self) -> &[AclBinding] {
        &self.acls
    }

    /// The ACLs passing `filter`.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = &'a AclBinding> {
        self.acls.iter().filter(move |b| filter.matches(b))
    }

    /// The ACLs passing `filter` when their answer fits in `bytes_max` (counted by
    /// [`AclBinding::answer_bytes`]); else how many match and their bytes, so a describe can
    /// refuse at once instead of building an answer of any size (`auth.acls_answer_bytes_max`).
    pub fn matching_within<'a>(
        &'a self,
        filter: &'a AclFilter,
        bytes_max: usize,
    ) -> Result<Vec<&'a AclBinding>, AnswerTooBig> {
        let mut bytes = 0usize;
        let mut out = Vec::new();
        for b in self.matching(filter) {
            bytes += b.answer_bytes();
            out.push(b);
        }
        match bytes <= bytes_max {
            true => Ok(out),
            false => Err(AnswerTooBig {
                count: out.len(),
                bytes,
                bytes_max,
            }),
        }
    }

    /// Decides one action of `who` (not a super user: callers check that first, see
    /// [`decide`]).
    pub fn authorize(
        &self,
        who: Requester<'_>,
        op: Operation,
        ty: ResourceType,
        name: &str,
        allow_if_no_acl: bool,
    ) -> Decision {
        let mut allowed = false;
        let (any, candidates) = self.candidates(ty, name, who.user);
        for b in candidates {
            if !b.applies_to(who.user, who.host) {
                continue;
            }
            match b.permission {
                Permission::Deny if b.operation.denies(op) => return Decision::Denied,
                Permission::Allow if b.operation.allows(op) => allowed = true,
                _ => {}
            }
        }
        if allowed {
            Decision::Allowed
        } else if !any && allow_if_no_acl {
            Decision::NoAclAllowed
        } else {
            Decision::NotAllowed
        }
    }

    /// Whether `who` may do `op` on at least one resource of type `ty` (Kafka's
    /// `authorizeByResourceType`, used for idempotent producers since KIP-679: WRITE on any
    /// topic): an ALLOW of `op` for `who` on some pattern that no DENY for `who` covers whole
    /// (a literal `*` DENY, or a DENY prefix of the ALLOW's name).
    /// With `allow_if_no_acl`, as Kafka, first a hypothetical resource named
    /// [`HYPOTHETICAL_NAME`] is authorized: allowed when no ACL covers it.
    pub fn allows_any(
        &self,
        who: Requester<'_>,
        op: Operation,
        ty: ResourceType,
        allow_if_no_acl: bool,
    ) -> bool {
        if self
            .authorize(who, op, ty, HYPOTHETICAL_NAME, allow_if_no_acl)
            .allowed()
        {
            return true;
        }
        let mine = |b: &&AclBinding| b.resource_type == ty && b.applies_to(who.user, who.host);
        let denies: Vec<&AclBinding> = self
            .acls
            .iter()
            .filter(mine)
            .filter(|b| b.permission == Permission::Deny && b.operation.denies(op))
            .collect();
        self.acls
            .iter()
            .filter(mine)
            .filter(|b| b.permission == Permission::Allow && b.operation.allows(op))
            .any(|allow| {
                !denies.iter().any(|d| {
                    (d.pattern == PatternType::Literal && d.resource_name == "*")
                        || (d.pattern == PatternType::Prefixed
                            && allow.resource_name.starts_with(&d.resource_name))
                        || (d.pattern == allow.pattern && d.resource_name == allow.resource_name)
                })
            })
    }
}

/// The whole decision: `enabled = false` allows everything; super users are allowed; else the
/// ACLs decide.
pub fn decide(
    acls: &AclSet,
    config: &super::AuthConfig,
    who: Requester<'_>,
    op: Operation,
    ty: ResourceType,
    name: &str,
) -> Decision {
    if !config.enabled || is_super(config, who.user) {
        return Decision::SuperUser;
    }
    acls.authorize(who, op, ty, name, config.allow_if_no_acl)
}

/// Whether `user` is one of `config.super_users` (`alice` or `User:alice`).
pub fn is_super(config: &super::AuthConfig, user: &str) -> bool {
    user != ANONYMOUS
        && config
            .super_users
            .iter()
            .any(|s| s.strip_prefix("User:").unwrap_or(s) == user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        ty: ResourceType,
        name: &str,
        pat: PatternType,
        who: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: ty,
            resource_name: name.into(),
            pattern: pat,
            principal: format!("User:{who}"),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn me(user: &str) -> Requester<'_> {
        Requester {
            user,
            host: "10.0.0.1".parse().unwrap(),
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn implied_operations_follow_kafka() {
        for op in [Read, Write, Delete, Alter] {
            assert!(op.allows(Describe), "{op:?}");
        }
        assert!(!Create.allows(Describe));
        assert!(AlterConfigs.allows(DescribeConfigs));
        assert!(!DescribeConfigs.allows(AlterConfigs));
        assert!(All.allows(IdempotentWrite));
        assert!(!Describe.allows(Read));
        assert!(
            !Describe.denies(Read),
            "a DENY of DESCRIBE does not refuse READ"
        );
        assert!(All.denies(Read));
    }

    #[test]
    fn deny_wins_over_allow_and_wildcards_and_prefixes_match() {
        let set = AclSet::new(vec![
            acl(Topic, "orders", Literal, "alice", Read, Allow),
            acl(Topic, "pay", Prefixed, "alice", All, Allow),
            acl(Topic, "pay-secret", Literal, "alice", Read, Deny),
            acl(Topic, "*", Literal, "*", Describe, Allow),
        ]);
        let d = |op, name| set.authorize(me("alice"), op, Topic, name, false);
        assert_eq!(d(Read, "orders"), Decision::Allowed);
        assert_eq!(d(Write, "orders"), Decision::NotAllowed);
        assert_eq!(d(Write, "payments"), Decision::Allowed);
        assert_eq!(d(Read, "pay-secret"), Decision::Denied);
        assert_eq!(d(Write, "pay-secret"), Decision::Allowed);
        assert_eq!(d(Describe, "anything"), Decision::Allowed);
        assert_eq!(
            set.authorize(me("bob"), Read, Topic, "orders", false),
            Decision::NotAllowed
        );
        assert_eq!(
            set.authorize(me("bob"), Read, Group, "orders", false),
            Decision::NotAllowed
        );
    }

    #[test]
    fn allow_if_no_acl_applies_only_to_resources_no_acl_names() {
        let set = AclSet::new(vec![acl(Topic, "orders", Literal, "bob", Read, Allow)]);
        let d = |name| set.authorize(me("alice"), Read, Topic, name, true);
        assert_eq!(d("other"), Decision::NoAclAllowed);
        assert_eq!(d("orders"), Decision::NotAllowed);
        assert_eq!(
            set.authorize(me("alice"), Read, Topic, "other", false),
            Decision::NotAllowed
        );
    }

    #[test]
    fn host_filters_apply() {
        let mut b = acl(Topic, "t", Literal, "alice", Read, Allow);
        b.host = "10.0.0.2".into();
        let set = AclSet::new(vec![b]);
        assert_eq!(
            set.authorize(me("alice"), Read, Topic, "t", false),
            Decision::NotAllowed
        );
        let other = Requester {
            user: "alice",
            host: "10.0.0.2".parse().unwrap(),
        };
        assert_eq!(
            set.authorize(other, Read, Topic, "t", false),
            Decision::Allowed
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_and_hosts_match_their_ipv4_form() {
        let mapped = |user| Requester {
            user,
            host: "::ffff:127.0.0.1".parse().unwrap(),
        };
        let mut deny = acl(Topic, "t", Literal, "alice", Read, Deny);
        deny.host = "127.0.0.1".into();
        let mut allow = acl(Topic, "t", Literal, "alice", Read, Allow);
        allow.host = "*".into();
        let set = AclSet::new(vec![deny, allow]);
        assert_eq!(
            set.authorize(mapped("alice"), Read, Topic, "t", false),
            Decision::Denied,
            "an IPv4 client on a [::] listener is still 127.0.0.1"
        );
        let mut b = acl(Topic, "u", Literal, "alice", Read, Allow);
        b.host = "::ffff:10.0.0.1".into();
        let set = AclSet::new(vec![b]);
        assert_eq!(
            set.authorize(me("alice"), Read, Topic, "u", false),
            Decision::Allowed,
            "an ACL host in mapped form covers the IPv4 peer"
        );
    }

    #[test]
    fn a_check_visits_only_the_acls_covering_the_name() {
        let mut acls: Vec<AclBinding> = (0..10_000)
            .map(|i| acl(Topic, &format!("p{i:05}-"), Prefixed, "alice", Read, Allow))
            .collect();
        acls.push(acl(Topic, "p00042-x", Literal, "alice", Read, Deny));
        acls.push(acl(Topic, "*", Literal, "*", Describe, Allow));
        acls.push(acl(Group, "p", Prefixed, "alice", Read, Allow));
        let set = AclSet::new(acls);
        let seen: Vec<_> = set.covering(Topic, "p00042-x").collect();
        assert_eq!(seen.len(), 3, "the prefix, the literal and *: {seen:?}");
        assert_eq!(set.covering(Topic, "p00042-y").count(), 2);
        assert_eq!(set.covering(Topic, "q").count(), 1);
        assert_eq!(set.covering(Group, "p1").count(), 1);
        let (any, seen) = set.candidates(Topic, "p00042-x", "bob");
        assert!(any);
        assert_eq!(seen.len(), 1, "only User:* applies to bob: {seen:?}");
        let d = |name| set.authorize(me("alice"), Read, Topic, name, false);
        assert_eq!(d("p00042-x"), Decision::Denied);
        assert_eq!(d("p09999-z"), Decision::Allowed);
        assert_eq!(d("p1"), Decision::NotAllowed);
        // Non-ASCII names: prefixes are cut at character boundaries only.
        let set = AclSet::new(vec![acl(Topic, "é", Prefixed, "alice", Read, Allow)]);
        assert_eq!(set.covering(Topic, "éa").count(), 1);
        assert_eq!(set.covering(Topic, "e\u{301}").count(), 0);
    }

    #[test]
    fn subjects_are_busbars_type_101_with_prefixed_patterns() {
        assert_eq!(ResourceType::of_code(101), Some(Subject));
        assert_eq!(ResourceType::of_name("subject"), Some(Subject));
        assert_eq!(Subject.name(), "SUBJECT");
        let set = AclSet::new(vec![acl(
            Subject, "orders-", Prefixed, "alice", Read, Allow,
        )]);
        let d = |op, name| set.authorize(me("alice"), op, Subject, name, false);
        assert_eq!(d(Read, "orders-value"), Decision::Allowed);
        assert_eq!(d(Describe, "orders-value"), Decision::Allowed);
        assert_eq!(d(Write, "orders-value"), Decision::NotAllowed);
        assert_eq!(d(Read, "payments-value"), Decision::NotAllowed);
        // A topic ACL of the same name says nothing about the subject, and back.
        let topic = AclSet::new(vec![acl(Topic, "orders-", Prefixed, "alice", Read, Allow)]);
        assert!(!topic
            .authorize(me("alice"), Read, Subject, "orders-value", false)
            .allowed());
    }

    #[test]
    fn validation_errors_echo_at_most_a_short_piece_of_a_field() {
        let mut b = acl(Topic, "t", Literal, "alice", Read, Allow);
        b.principal = "\u{1}".repeat(1_000_000);
        let why = b.validate().unwrap_err();
        assert!(why.len() < 200, "{} bytes", why.len());
        b.principal = format!("x{}", "é".repeat(80));
        let why = b.validate().unwrap_err();
        assert!(why.len() < 250 && why.contains("must be User:"), "{why}");
        b.principal = "User:a".into();
        b.host = "h".repeat(500);
        let why = b.validate().unwrap_err();
        assert!(why.len() < 200 && why.contains("neither"), "{why}");
    }

    #[test]
    fn super_users_and_disabled_auth_are_allowed_anonymous_is_never_super() {
        let config = super::super::AuthConfig {
            enabled: true,
            super_users: vec!["User:admin".into(), ANONYMOUS.into()],
            ..Default::default()
        };
        let set = AclSet::default();
        let d = |u| decide(&set, &config, me(u), Alter, Cluster, CLUSTER_NAME);
        assert_eq!(d("admin"), Decision::SuperUser);
        assert_eq!(d(ANONYMOUS), Decision::NotAllowed);
        assert_eq!(d("alice"), Decision::NotAllowed);
        let off = super::super::AuthConfig::default();
        assert!(decide(&set, &off, me("x"), Alter, Cluster, CLUSTER_NAME).allowed());
    }

    #[test]
    fn filters_match_exact_any_and_match_patterns() {
        let lit = acl(Topic, "orders", Literal, "alice", Read, Allow);
        let pre = acl(Topic, "ord", Prefixed, "alice", Read, Allow);
        let star = acl(Topic, "*", Literal, "alice", Read, Allow);
        let f = AclFilter {
            resource_name: Some("orders".into()),
            pattern: Some(PatternFilter::Match),
            ..Default::default()
        };
        assert!(f.matches(&lit) && f.matches(&pre) && f.matches(&star));
        let f = AclFilter {
            resource_name: Some("ord".into()),
            pattern: Some(PatternFilter::Exact(Prefixed)),
            ..Default::default()
        };
        assert!(!f.matches(&lit) && f.matches(&pre) && !f.matches(&star));
        assert!(AclFilter::default().matches(&lit));
        let f = AclFilter {
            permission: Some(Deny),
            ..Default::default()
        };
        assert!(!f.matches(&lit));
    }

    #[test]
    fn allows_any_needs_an_allow_not_wholly_denied() {
        let set = AclSet::new(vec![
            acl(Topic, "a", Literal, "alice", Write, Allow),
            acl(Topic, "a", Literal, "alice", Write, Deny),
            acl(Topic, "b", Prefixed, "bob", Write, Allow),
        ]);
        assert!(!set.allows_any(me("alice"), Write, Topic, false));
        assert!(set.allows_any(me("bob"), Write, Topic, false));
        assert!(!set.allows_any(me("carol"), Write, Topic, false));
        // allow_if_no_acl: as Kafka, a hypothetical topic no ACL names is allowed...
        assert!(set.allows_any(me("carol"), Write, Topic, true));
        // ...unless an ACL covers it (here literal `*`).
        let mut acls = set.all().to_vec();
        acls.push(acl(Topic, "*", Literal, "bob", Read, Allow));
        let set = AclSet::new(acls);
        assert!(!set.allows_any(me("carol"), Write, Topic, true));
    }

    #[test]
    fn validation_refuses_bad_principals_hosts_and_cluster_names() {
        let ok = acl(Topic, "t", Literal, "alice", Read, Allow);
        assert!(ok.validate().is_ok());
        let mut b = ok.clone();
        b.principal = "alice".into();
        assert!(b.validate().unwrap_err().contains("User:"));
        let mut b = ok.clone();
        b.host = "example.com".into();
        assert!(b.validate().is_err());
        let mut b = ok.clone();
        b.resource_type = Cluster;
        assert!(b.validate().is_err());
        b.resource_name = CLUSTER_NAME.into();
        assert!(b.validate().is_ok());
        let mut b = ok;
        b.resource_name = "x".repeat(ACL_FIELD_BYTES_MAX + 1);
        assert!(b.validate().is_err());
    }
}
