//! The `missive` binary: `serve`, `import`, `bench` and the operator commands. It reads
//! configuration, opens the store, hands both to the composition root
//! (`missive_server::app::App`), and owns the process (signals, logging, exit codes).

mod bench;
mod bench_bandit;
mod bench_cluster;
mod bench_delivery;
mod bench_models;
mod bench_recs;
mod bench_render;
mod bench_segments;
mod bench_webhooks;
mod broadcast;
mod cluster;
mod config;
mod content;
mod demo;
mod doctor;
mod experiment;
mod import;
mod journey;
mod keyfile;
mod messages;
mod model;
mod operator;
mod privacy;
mod recs;
mod schema;
mod segment;
mod serve;
mod stores;
mod telemetry;
mod webhook;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// The pipeline allocates many small, short-lived values (JSON trees, strings); mimalloc is
// markedly faster at that than glibc's allocator (see docs/BENCHMARKS.md). Without the
// `mimalloc` feature the system allocator is used, which heap profilers can follow.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "missive",
    version,
    about = "Real-time, micro-targeted e-mail personalization engine"
)]
struct Cli {
    #[command(flatten)]
    global: config::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (tracking API, profile API, metrics).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<String>,
        /// Run as one node of a cluster on NATS JetStream and PostgreSQL (the `[cluster]`
        /// settings; docs/operations.md).
        #[arg(long)]
        cluster: bool,
    },
    /// Build the case study (a fashion shop with a year of customers, segments, templates and
    /// journeys) in ./missive-demo and serve it; prints the console's address and a login.
    Demo(demo::DemoArgs),
    /// Import a Segment-format JSONL file or a CSV transaction log.
    Import(import::ImportArgs),
    /// Work with segments.
    Segment {
        #[command(subcommand)]
        what: segment::SegmentCommand,
    },
    /// The schema segments are checked against: list it, declare fields before data.
    Schema {
        #[command(subcommand)]
        what: schema::SchemaCommand,
    },
    /// Experiments: create, start, stop and conclude them; analyse a table of units from any
    /// source with missive's statistics.
    Experiment {
        #[command(subcommand)]
        what: experiment::ExperimentCommand,
    },
    /// Outbound webhooks: create endpoints, test, pause, rotate secrets, read attempts and
    /// replay dead letters.
    Webhook {
        #[command(subcommand)]
        what: webhook::WebhookCommand,
    },
    /// Models trained from files: lifetime value (`train clv`), clusters (`train cluster`) and
    /// propensity (`train propensity`).
    Model {
        #[command(subcommand)]
        what: model::ModelCommand,
    },
    /// Recommendations: evaluate strategies offline on a table of interactions.
    Recs {
        #[command(subcommand)]
        what: recs::RecsCommand,
    },
    /// Render a Liquid template with JSON data to standard output (errors to standard error).
    Render(content::RenderArgs),
    /// Work with e-mail templates: save, list, delete, preview for a profile.
    Template {
        #[command(subcommand)]
        what: content::TemplateCommand,
    },
    /// Work with content blocks: save, list, delete, decision matrix.
    Block {
        #[command(subcommand)]
        what: content::BlockCommand,
    },
    /// Work with journeys: save, list, show, delete, instances.
    Journey {
        #[command(subcommand)]
        what: journey::JourneyCommand,
    },
    /// Work with broadcasts: create, list, show, pause, resume, cancel.
    Broadcast {
        #[command(subcommand)]
        what: broadcast::BroadcastCommand,
    },
    /// Load the product catalogue.
    Catalog {
        #[command(subcommand)]
        what: content::CatalogCommand,
    },
    /// Encryption at rest: master keys, rotation.
    Encryption {
        #[command(subcommand)]
        what: privacy::EncryptionCommand,
    },
    /// API keys: create (shown once), list, revoke.
    Apikey {
        #[command(subcommand)]
        what: privacy::ApiKeyCommand,
    },
    /// Data-subject rights: export and erase a person; purge events past retention.
    Privacy {
        #[command(subcommand)]
        what: privacy::PrivacyCommand,
    },
    /// Read the audit log, newest first, one JSON object per line.
    Audit(privacy::AuditArgs),
    /// Check that the configuration can send real mail: identity, DKIM, public URL, the DNS
    /// records to publish, and the SMTP relay.
    Doctor,
    /// What became of messages and why (skipped, deferred, failed), per journey, broadcast or
    /// person, newest first, one JSON object per line.
    Messages(messages::MessagesArgs),
    /// Measure missive on this machine.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Cluster mode on PostgreSQL: the nodes, the partitions each owns, their leases.
    Cluster {
        #[command(subcommand)]
        what: cluster::ClusterCommand,
    },
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    // The demo builds its own data directory, beside the user's own data.
    if matches!(cli.command, Command::Demo(_)) && cli.global.data_dir.is_none() && cli.global.store.is_none()
    {
        cli.global.data_dir = Some(PathBuf::from("missive-demo"));
    }
    // The store flags are global (every other command reads data); clap cannot leave a
    // global flag out of one subcommand, so `render`, which reads none, refuses them here.
    if (matches!(
        cli.command,
        Command::Render(_)
            | Command::Experiment {
                what: experiment::ExperimentCommand::Analyze(_)
            }
    ) || matches!(&cli.command, Command::Model { what } if what.reads_no_store())
        || matches!(&cli.command, Command::Recs { what } if what.reads_no_store()))
        && (cli.global.store.is_some() || cli.global.data_dir.is_some())
    {
        eprintln!("error: this command reads no store: --store and --data-dir do not apply to it");
        return std::process::ExitCode::from(2);
    }
    let config = match config::Config::load(&cli.global) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { listen, cluster } => {
                let mut config = config;
                if cluster {
                    config.cluster.enabled = true;
                    config.cluster.check(config.store.as_deref())?;
                }
                serve::run(config, listen, None).await
            }
            Command::Demo(args) => demo::run(config, args).await,
            Command::Import(args) => import::run(config, args).await,
            Command::Segment { what } => segment::run(config, what).await,
            Command::Schema { what } => schema::run(config, what).await,
            Command::Render(args) => content::render(args),
            Command::Experiment { what } => experiment::on_store(config, what).await,
            Command::Webhook { what } => webhook::run(config, what).await,
            Command::Model { what } => model::run(config, what).await,
            Command::Recs { what } => recs::run(config, what).await,
            Command::Template { what } => content::template(config, what).await,
            Command::Block { what } => content::block(config, what).await,
            Command::Catalog { what } => content::catalog(config, what).await,
            Command::Encryption { what } => privacy::encryption(config, what).await,
            Command::Apikey { what } => privacy::apikey(config, what).await,
            Command::Privacy { what } => privacy::privacy(config, what).await,
            Command::Audit(args) => privacy::audit_log(config, args).await,
            Command::Messages(args) => messages::run(config, args).await,
            Command::Doctor => doctor::run(config).await,
            Command::Journey { what } => journey::run_journey(config, what).await,
            Command::Broadcast { what } => broadcast::run_broadcast(config, what).await,
            Command::Bench { what } => bench::run(config, what).await,
            Command::Cluster { what } => cluster::run(config, what).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the embedded store lives inside a data directory.
pub fn sqlite_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("missive.db")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "missive", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}
