//! The `busbar` binary: `busbar serve` runs the event bus; the other subcommands are a client of
//! its HTTP API. Exit codes (the README's table): 0 success (also when the reader of the output
//! closed the pipe), 1 the server refused the request, 2 bad usage or input or configuration, 3 the
//! server could not be reached or is not busbar; 128 + signal for `consume --group` stopped by one.

mod args;
mod bench;
mod client;
mod cmd;
use busbar::config;
use busbar_broker::log;
mod help;
mod progress;
mod serve;

use clap::{Args, FromArgMatches, Parser, Subcommand};
use client::{Client, Output};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: busbar_kafka::alloc::Allocator = busbar_kafka::alloc::Allocator;

#[derive(Debug, Parser)]
#[command(
    name = "busbar",
    version,
    about = "An event bus: a durable Kafka-style log and a routing bus in one binary"
)]
struct Cli {
    /// Server to talk to (client commands).
    #[arg(
        long,
        global = true,
        env = "BUSBAR_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Output style of client commands.
    #[arg(long, global = true, env = "BUSBAR_OUTPUT", value_enum, default_value_t = Output::Table)]
    output: Output,
    /// User for HTTP Basic authentication (client commands; needs --password).
    #[arg(long, global = true, env = "BUSBAR_USER")]
    user: Option<String>,
    /// Password of --user.
    #[arg(long, global = true, env = "BUSBAR_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// API token (POST /tokens) sent as Authorization: Bearer, instead of --user/--password.
    #[arg(long, global = true, env = "BUSBAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM CA certificates an https:// --server's certificate must chain to (default: the
    /// Mozilla roots).
    #[arg(long, global = true, env = "BUSBAR_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ServeFlags {
    /// Config file (default: ./busbar.toml when it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (default ./busbar-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8080).
    #[arg(long)]
    http_addr: Option<String>,
    /// Kafka protocol listen address (default 127.0.0.1:9092).
    #[arg(long)]
    kafka_addr: Option<String>,
    /// Schema registry listen address (default 127.0.0.1:8081; "" serves it only under
    /// /schema-registry/ on the HTTP API).
    #[arg(long)]
    schema_registry_addr: Option<String>,
    /// Serve even when the ACL or users log is damaged (rows after the damage are lost; with
    /// auth.enabled the start is refused otherwise).
    #[arg(long)]
    accept_damaged_acls: bool,
    /// Run as one broker of a cluster whose partition data and topics live in this PostgreSQL
    /// database (postgres://user:password@host:port/db; cluster.postgres_url).
    #[arg(long, value_name = "POSTGRES_URL")]
    cluster: Option<String>,
    /// This broker's id in a cluster, distinct per broker (cluster.node_id).
    #[arg(long)]
    node_id: Option<u64>,
}

impl ServeFlags {
    fn flags(self) -> config::Flags {
        config::Flags {
            config: self.config,
            data_dir: self.data_dir,
            http_addr: self.http_addr,
            kafka_addr: self.kafka_addr,
            schema_registry_addr: self.schema_registry_addr,
            cluster: self.cluster,
            node_id: self.node_id,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the event bus (defaults need no configuration).
    Serve(ServeFlags),
    /// Print the effective configuration (defaults < busbar.toml < BUSBAR_* < flags).
    CheckConfig(ServeFlags),
    /// Manage topics.
    #[command(subcommand)]
    Topic(cmd::topic::TopicCmd),
    /// Publish events.
    Produce(cmd::produce::ProduceArgs),
    /// Read events.
    Consume(cmd::consume::ConsumeArgs),
    /// Inspect and manage consumer groups.
    #[command(subcommand)]
    Group(cmd::group::GroupCmd),
    /// Event patterns (content rules).
    #[command(subcommand)]
    Rule(cmd::rule::RuleCmd),
    /// Subscriptions: route events by content to a topic or an HTTP endpoint.
    #[command(subcommand)]
    Subscription(Box<cmd::subscription::SubscriptionCmd>),
    /// Dead letters: list, show, redrive.
    #[command(subcommand)]
    Dlq(cmd::dlq::DlqCmd),
    /// Schema registry: register, get, list, delete, check, config, mode (through --server's
    /// /schema-registry/).
    #[command(subcommand)]
    Schema(cmd::schema::SchemaCmd),
    /// Users of the HTTP API and Kafka SASL: create, delete, list.
    #[command(subcommand)]
    User(cmd::user::UserCmd),
    /// ACLs (Kafka's model) of the HTTP API, Kafka clients and the bus: create, list, delete.
    #[command(subcommand)]
    Acl(cmd::acl::AclCmd),
    /// Kafka client quotas per user and client id: list, set, delete.
    #[command(subcommand)]
    Quota(cmd::quota::QuotaCmd),
    /// Development TLS certificates (a CA, a server and client certificates) for [tls].
    #[command(subcommand)]
    Tls(cmd::tls::TlsCmd),
    /// Load a running busbar over the Kafka protocol: produce, consume, e2e or fanout.
    Bench(Box<bench::BenchArgs>),
    /// Cluster mode (docs/cluster.md): import a single node's data directory.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Print a shell completion script (e.g. `busbar completions bash > /etc/bash_completion.d/busbar`).
    Completions(help::CompletionsArgs),
    /// Print the man page busbar(1), or write every command's page with --dir.
    Man(help::ManArgs),
}

/// `busbar cluster ...`.
#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// Copy a stopped single node's topics, events and committed offsets (--data-dir) into the
    /// cluster's database (--cluster postgres://...), in one transaction; the directory is left
    /// as it was.
    Import(ServeFlags),
}

/// Runs `busbar cluster import`, printing what it wrote.
fn cluster_import(flags: ServeFlags) -> ExitCode {
    let config = match load(flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match busbar::cluster_import::run(&config) {
        Ok(d) => {
            client::outln!(
                "imported {} topics, {} partitions, {} batches ({} offsets, {} bytes), {} \
                 committed offsets, {} rows of users, ACLs, quotas and schemas ({} kept \
                 as the cluster had them)",
                d.topics,
                d.partitions,
                d.batches,
                d.offsets,
                d.bytes,
                d.commits,
                d.table_rows,
                d.table_rows_kept
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("busbar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(flags: ServeFlags) -> Result<config::Config, ExitCode> {
    config::Config::load(&flags.flags(), std::env::vars()).map_err(|e| {
        eprintln!("busbar: {e:#}");
        ExitCode::from(2)
    })
}

/// Raises the open-file soft limit to the hard limit and lowers `kafka.connections_max` to fit it,
/// keeping descriptors for the log (`busbar_kafka::fds`); says so when it lowers the setting.
fn fit_descriptors(config: &mut config::Config) {
    match busbar_kafka::fds::raise_descriptor_limit() {
        Ok((_, limit)) => {
            if let Some(configured) = config.fit_descriptors(limit) {
                let msg = format!(
                    "kafka.connections_max lowered from {configured} to {} to fit the \
                     open-file limit of {limit} (descriptors kept for the log: {})",
                    config.kafka.connections_max,
                    limit - busbar_kafka::fds::connections_fitting(limit)
                );
                log::info("busbar", "connections_max_lowered", &msg, &[]);
            }
        }
        Err(e) => {
            let msg = format!("cannot raise the open-file limit: {e}");
            log::warn("busbar", "open_file_limit", &msg, &[]);
        }
    }
}

fn main() -> ExitCode {
    let matches = help::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let run_client = |f: &dyn Fn(&Client) -> client::CliResult<()>| -> client::CliResult<()> {
        let c = Client::new(&cli.server, cli.output, cli.ca_file.as_deref())?.with_credentials(
            cli.user.as_deref(),
            cli.password.as_deref(),
            cli.token.as_deref(),
        )?;
        f(&c)
    };
    let result = match cli.command {
        Command::Serve(flags) => {
            let accept_damaged_acls = flags.accept_damaged_acls;
            let mut config = match load(flags) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Every later line in the configured format (a bad format was refused by `load`).
            if let Ok(format) = config.log.format() {
                log::set_format(format);
            }
            fit_descriptors(&mut config);
            return match serve::run(config, accept_damaged_acls) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    log::error("busbar", "exit", &format!("{e:#}"), &[]);
                    // A data directory or a listen address in use is a usage error (exit 2),
                    // like a bad flag.
                    let usage = e.chain().any(|c| {
                        c.is::<serve::Unbindable>()
                            || c.is::<serve::NoAdmin>()
                            || c.is::<serve::BadTls>()
                            || c.is::<serve::DamagedAuth>()
                            || matches!(
                                c.downcast_ref(),
                                Some(busbar_broker::BrokerError::DataDirLocked(_))
                            )
                    });
                    ExitCode::from(if usage { 2 } else { 1 })
                }
            };
        }
        Command::CheckConfig(flags) => {
            return match load(flags) {
                Ok(c) => {
                    match cli.output {
                        Output::Json => client::outln!("{}", serde_json::json!(c)),
                        Output::Table => client::outln!("{}", c.to_toml().trim_end()),
                    }
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        Command::Cluster(ClusterCmd::Import(flags)) => return cluster_import(flags),
        Command::Completions(a) => {
            help::completions(a);
            return ExitCode::SUCCESS;
        }
        Command::Man(a) => help::man(a).map_err(|e| client::CliError::Output(e.to_string())),
        Command::Topic(c) => run_client(&|cl| cmd::topic::run(cl, c.clone())),
        Command::Produce(a) => run_client(&|cl| cmd::produce::run(cl, a.clone())),
        Command::Consume(a) => run_client(&|cl| cmd::consume::run(cl, a.clone())),
        Command::Group(g) => run_client(&|cl| cmd::group::run(cl, g.clone())),
        Command::Rule(r) => cmd::rule::run(cli.output, r),
        Command::Subscription(s) => run_client(&|cl| cmd::subscription::run(cl, (*s).clone())),
        Command::Dlq(d) => run_client(&|cl| cmd::dlq::run(cl, d.clone())),
        Command::Schema(sc) => run_client(&|cl| cmd::schema::run(cl, sc.clone())),
        Command::User(u) => run_client(&|cl| cmd::user::run(cl, u.clone())),
        Command::Quota(q) => run_client(&|cl| cmd::quota::run(cl, q.clone())),
        Command::Acl(a) => run_client(&|cl| cmd::acl::run(cl, a.clone())),
        Command::Tls(t) => cmd::tls::run(t),
        Command::Bench(b) => bench::run(*b, cli.output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}
