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
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Command,
}

/// Installed as `kubectl-siesta`, the binary is a kubectl plugin
/// (`kubectl siesta status|sleep|wake|report`): kubectl's convention, the
/// binary name decides. kubectl passes no global flags to plugins, so
/// `--context`, `--kubeconfig` and `-n` are parsed here, as kubectl would.
#[derive(Parser)]
#[command(
    name = "kubectl siesta",
    bin_name = "kubectl siesta",
    version,
    about = "Sleep mode for Kubernetes namespaces (kubectl plugin)"
)]
struct Plugin {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: People,
}

/// Which cluster, as kubectl chooses it.
#[derive(clap::Args)]
struct Target {
    /// Path to the kubeconfig file (default: KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    context: Option<String>,
}

impl From<Target> for siesta::client::Target {
    fn from(t: Target) -> Self {
        siesta::client::Target {
            kubeconfig: t.kubeconfig,
            context: t.context,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Watch namespaces, decide, sleep and wake them; serve the audit webhook and metrics.
    Controller(Box<args::Controller>),
    /// The ingress proxy: count HTTP activity, hold requests while a namespace wakes.
    Proxy(Box<args::Proxy>),
    #[command(flatten)]
    People(People),
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

/// The commands for people, also the kubectl plugin's.
#[derive(Subcommand)]
enum People {
    /// Print each opted-in namespace's state, reason, last activity, next change and savings.
    Status {
        /// Only this namespace.
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Put a namespace to sleep now (through siesta.dev/action).
    Sleep {
        #[command(flatten)]
        namespace: Named,
    },
    /// Wake a namespace now (through siesta.dev/action); with --for, keep it
    /// awake that long (siesta.dev/keep-awake-until).
    Wake {
        #[command(flatten)]
        namespace: Named,
        /// Keep it awake this long: `2h`, `90m`, as `idle-after` is written.
        #[arg(long = "for")]
        keep_awake_for: Option<args::Dur>,
    },
    /// Per namespace and team: hours asleep, money saved and wakes, real or
    /// (observe mode) would-be.
    Report {
        /// The window, with --prometheus: `7d`, `24h`.
        #[arg(long, default_value = "7d")]
        since: args::Dur,
        /// Read the counters over the window from this Prometheus
        /// (`http://prometheus:9090`); without it, the totals recorded on the namespaces.
        #[arg(long)]
        prometheus: Option<String>,
        /// Admin config whose prices value the current sleeps (default prices otherwise).
        #[arg(long, env = "SIESTA_CONFIG")]
        config: Option<PathBuf>,
        /// The namespace label that names its team.
        #[arg(long, default_value = "team")]
        team_label: String,
    },
}

/// The namespace of `sleep` and `wake`: as an argument, or `-n` as kubectl writes it.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Named {
    /// The namespace.
    name: Option<String>,
    /// The namespace, as kubectl's -n.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
}

impl Named {
    fn get(self) -> String {
        self.name.or(self.namespace).unwrap_or_default()
    }
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

/// `status`, `sleep`, `wake` and `report`.
async fn people(target: &siesta::client::Target, command: People) -> anyhow::Result<()> {
    use siesta::model::Action;
    match command {
        People::Status { namespace } => siesta::status::run(target, namespace.as_deref()).await?,
        People::Sleep { namespace } => {
            siesta::status::command(target, &namespace.get(), Action::Sleep, None).await?
        }
        People::Wake {
            namespace,
            keep_awake_for,
        } => {
            let d = keep_awake_for.map(|d| d.0);
            siesta::status::command(target, &namespace.get(), Action::Wake, d).await?
        }
        People::Report {
            since,
            prometheus,
            config,
            team_label,
        } => {
            let prices = match config {
                Some(path) => {
                    siesta::config::load(&path)
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .prices
                }
                None => Default::default(),
            };
            let opts = siesta::report::Options {
                since: since.0,
                prometheus,
                team_label,
                prices,
            };
            siesta::report::run(target, &opts).await?
        }
    }
    Ok(())
}

/// Whether this binary was started as kubectl's plugin (`kubectl-siesta`).
fn as_plugin() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .is_some_and(|name| name == "kubectl-siesta")
}

fn main() -> ExitCode {
    let (target, command) = if as_plugin() {
        let p = Plugin::parse();
        (p.target, Command::People(p.command))
    } else {
        let c = Cli::parse();
        (c.target, c.command)
    };
    let target = siesta::client::Target::from(target);
    let chosen = target.kubeconfig.is_some() || target.context.is_some();
    if chosen && matches!(command, Command::Controller(_) | Command::Proxy(_)) {
        eprintln!(
            "siesta: --kubeconfig and --context are for the commands people run; the controller and the proxy read KUBECONFIG or their in-cluster account"
        );
        return ExitCode::from(2);
    }
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
        match command {
            Command::Controller(args) => controller::run(controller::Settings::from(*args))
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
            Command::Proxy(args) => proxy::run(proxy::Settings::from(*args))
                .await
                .map(|_| ExitCode::SUCCESS)
                .map_err(Into::into),
            Command::People(people) => self::people(&target, people)
                .await
                .map(|_| ExitCode::SUCCESS),
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
