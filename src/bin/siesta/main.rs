//! `siesta`: parse the command line, start logging, run the chosen subcommand.
#![forbid(unsafe_code)]
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use siesta::{controller, proxy};

mod args;

/// jemalloc, configured in .cargo/config.toml to give idle memory back to the
/// system: with glibc's allocator the controller kept what bursts of watch
/// pages left behind as RSS, 45-66 MiB between identical runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "siesta",
    version,
    about = "Sleep mode for Kubernetes namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch namespaces, decide, sleep and wake them; serve the audit webhook and metrics.
    Controller(Box<args::Controller>),
    /// The ingress proxy: count HTTP activity, hold requests while a namespace wakes.
    Proxy(Box<args::Proxy>),
    /// Print each opted-in namespace's state, reason, last activity, next change and savings.
    Status {
        /// Only this namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Put a namespace to sleep now (through siesta.dev/action).
    Sleep { namespace: String },
    /// Wake a namespace now (through siesta.dev/action); with --for, keep it
    /// awake that long (siesta.dev/keep-awake-until).
    Wake {
        namespace: String,
        /// Keep it awake this long: `2h`, `90m`, as `idle-after` is written.
        #[arg(long = "for")]
        keep_awake_for: Option<args::Dur>,
    },
    /// Validate an admin config file; exit 1 listing every error with its location.
    CheckConfig { file: PathBuf },
    /// Audit tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Evaluate a weekly awake-hours SPEC (or a named schedule of --config) at an instant.
    Schedule {
        /// The siesta.dev/awake-hours syntax, or a schedule name with --config.
        spec: String,
        /// The instant to evaluate (RFC 3339); default now.
        #[arg(long)]
        at: Option<String>,
        /// Read SPEC as a schedule name from this admin config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Feed an audit JSON-lines file through the ingest path; print throughput and totals.
    Replay {
        file: PathBuf,
        /// Admin config whose audit ignore lists apply.
        #[arg(long, env = "SIESTA_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SIESTA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn audit_replay(
    file: &std::path::Path,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let ignore = config
        .map(siesta::audit::ignore_from_config_file)
        .transpose()?
        .unwrap_or_default();
    let report = siesta::audit::replay::replay_file(file, siesta::audit::Rules::new(&ignore))?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// `siesta schedule SPEC [--at INSTANT] [--config FILE]`: the phase at the
/// instant and the next change. With a config, SPEC names one of its schedules.
fn schedule(
    spec: &str,
    at: Option<&str>,
    config: Option<&std::path::Path>,
) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let at = match at {
        Some(s) => siesta::model::parse_instant(s).map_err(anyhow::Error::msg)?,
        None => chrono::Utc::now(),
    };
    let schedule = match config {
        Some(path) => {
            let cfg = siesta::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            let known = cfg.schedules.keys().cloned().collect::<Vec<_>>().join(", ");
            cfg.schedules.get(spec.trim()).cloned().with_context(|| {
                format!(
                    "{}: no schedule named {spec:?} (defined: {known})",
                    path.display()
                )
            })?
        }
        None => siesta::schedule::Schedule::parse_awake_hours(spec)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    Ok(schedule.describe(at))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("siesta: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<ExitCode> = runtime.block_on(async move {
        match cli.command {
            Command::Controller(args) => controller::run(controller::Settings::from(*args))
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
            Command::Proxy(args) => proxy::run(proxy::Settings::from(*args))
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
            Command::Status { namespace } => siesta::status::run(namespace.as_deref())
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
            Command::Sleep { namespace } => {
                siesta::status::command(&namespace, siesta::model::Action::Sleep, None)
                    .await
                    .map(|_| ExitCode::SUCCESS)
                    .map_err(Into::into)
            }
            Command::Wake {
                namespace,
                keep_awake_for,
            } => siesta::status::command(
                &namespace,
                siesta::model::Action::Wake,
                keep_awake_for.map(|d| d.0),
            )
            .await
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
            Command::CheckConfig { file } => {
                let (ok, report) = siesta::config::check_config_cli(&file);
                if ok {
                    print!("{report}")
                } else {
                    eprint!("{report}")
                }
                Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Command::Audit(AuditCommand::Replay { file, config }) => {
                audit_replay(&file, config.as_deref())
            }
            Command::Schedule { spec, at, config } => {
                schedule(&spec, at.as_deref(), config.as_deref()).map(|out| {
                    print!("{out}");
                    ExitCode::SUCCESS
                })
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("siesta: {e:#}");
            ExitCode::FAILURE
        }
    }
}
