//! The `maillog_exporter` binary: parse flags, build settings, run.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use maillog_exporter::config::{self, FileSource};
use maillog_exporter::daemon::{self, DaemonSettings, Feed};
use maillog_exporter::http::{self, HttpSettings};
use maillog_exporter::metrics::{BuildInfo, Metrics, SourceMetrics};
use maillog_exporter::parser::time::{SystemClock, Zone};
use maillog_exporter::parser::Format;
use maillog_exporter::pipeline::{FormatSettings, Pipeline, SourceSpec, DEFAULT_BLOCK_SIZE};
use maillog_exporter::source::SourceId;
use maillog_exporter::state::StateSettings;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Default port: the 9100–9999 exporter range is fully allocated; 9873
/// clashes with no mail-related exporter (postfix_exporter 9154,
/// exim_exporter 9636, grok_exporter 9144, mtail 3903).
const DEFAULT_LISTEN: &str = ":9873";
const DEFAULT_LOGS: [&str; 2] = ["/var/log/mail.log", "/var/log/maillog"];

#[derive(Parser, Debug)]
#[command(
    name = "maillog_exporter",
    version,
    about = "Prometheus exporter for mail server logs (Postfix and more).",
    long_about = "Follows mail server log files and serves Prometheus metrics.\n\n\
                  With no FILE and no --config.file, follows /var/log/mail.log or /var/log/maillog.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Args, Debug)]
struct WebArgs {
    /// Address to listen on for the web interface and telemetry.
    #[arg(long = "web.listen-address", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen_address: String,
    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    telemetry_path: String,
    /// Web configuration file (TLS, basic auth) in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,
    /// Log level of the exporter's own messages (error, warn, info, debug, trace).
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// Most messages tracked at once by the per-message correlator.
    #[arg(
        long = "state.max-messages",
        value_name = "N",
        default_value_t = 100_000
    )]
    max_messages: usize,
    /// Forget a tracked message this long after it was first seen (e.g. 6d, 12h).
    #[arg(long = "state.ttl", value_name = "DURATION", default_value = "6d", value_parser = parse_duration)]
    state_ttl: Duration,
}

#[derive(Args, Debug)]
struct DaemonArgs {
    /// Log files to follow.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Configuration file listing sources (path or glob, format, name).
    #[arg(long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Log format of the FILEs: auto (detect from content) or a format name.
    #[arg(long = "log.format", value_name = "NAME", default_value = "auto")]
    format: String,
    /// Read the files' existing content first instead of starting at their end.
    #[arg(long = "tail.from-beginning")]
    from_beginning: bool,
    /// How often to check files when no file-system event arrives.
    #[arg(long = "tail.poll-interval", value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Longest line accepted; longer lines are skipped and counted.
    #[arg(
        long = "log.max-line-bytes",
        value_name = "BYTES",
        default_value_t = 65_536
    )]
    max_line_bytes: usize,
    /// Bytes per block of the sizes Messaging Server logs (its BLOCK_SIZE option), for FILEs
    /// and config sources without `block_size`.
    #[arg(long = "messaging-server.block-size", value_name = "BYTES", default_value_t = DEFAULT_BLOCK_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    block_size: u64,
    /// File where read positions are saved, to resume after a restart; "" disables.
    /// Default: $STATE_DIRECTORY/positions.json if STATE_DIRECTORY is set, else
    /// /var/lib/maillog_exporter/positions.json.
    #[arg(long = "tail.positions-file", value_name = "PATH")]
    positions_file: Option<std::ffi::OsString>,
    #[command(flatten)]
    web: WebArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read FILEs from start to end through the pipeline and print the final metrics.
    Replay {
        /// Log format: auto (detect from content) or a format name.
        #[arg(long = "log.format", value_name = "NAME", default_value = "auto")]
        format: String,
        /// Longest line accepted; longer lines are skipped and counted.
        #[arg(long = "log.max-line-bytes", value_name = "BYTES", default_value_t = 1 << 20)]
        max_line_bytes: usize,
        /// Most messages tracked at once by the per-message correlator.
        #[arg(
            long = "state.max-messages",
            value_name = "N",
            default_value_t = 100_000
        )]
        max_messages: usize,
        /// Forget a tracked message this long (of log time) after it was first seen.
        #[arg(long = "state.ttl", value_name = "DURATION", default_value = "6d", value_parser = parse_duration)]
        state_ttl: Duration,
        /// Bytes per block of the sizes Messaging Server logs (its BLOCK_SIZE option).
        #[arg(long = "messaging-server.block-size", value_name = "BYTES", default_value_t = DEFAULT_BLOCK_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
        block_size: u64,
        /// Files to read; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Serve live metrics from bundled real sample logs replayed in a loop.
    Demo {
        /// Lines replayed per second.
        #[arg(long = "demo.lines-per-second", value_name = "N", default_value_t = 50)]
        lines_per_second: usize,
        #[command(flatten)]
        web: WebArgs,
    },
}

/// Parses `500ms`, `30s`, `10m`, `12h`, `6d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 30s, 10m, 12h, 6d"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use ms, s, m, h or d"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_format(name: &str) -> Result<Option<Format>> {
    if name == "auto" {
        return Ok(None);
    }
    match Format::from_name(name) {
        Some(f) => Ok(Some(f)),
        None => bail!(
            "unknown log format {name:?}; use auto or one of: {}",
            Format::names()
        ),
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn state_settings(web: &WebArgs) -> StateSettings {
    StateSettings {
        max_messages: web.max_messages,
        ttl_seconds: web.state_ttl.as_secs_f64(),
    }
}

fn http_settings(web: &WebArgs) -> Result<HttpSettings> {
    let web_config = match &web.web_config {
        Some(p) => Some(http::load_web_config(p)?),
        None => None,
    };
    if !web.telemetry_path.starts_with('/') {
        bail!(
            "--web.telemetry-path must start with '/', got {:?}",
            web.telemetry_path
        );
    }
    Ok(HttpSettings {
        listen_address: web.listen_address.clone(),
        telemetry_path: web.telemetry_path.clone(),
        web_config,
    })
}

/// The files to follow: the config file's sources, the FILE arguments, or
/// the system's default mail log. `Ok(None)` when there is nothing to follow.
fn file_sources(args: &DaemonArgs) -> Result<Option<Vec<FileSource>>> {
    let format = parse_format(&args.format)?;
    let mut files = Vec::new();
    if let Some(path) = &args.config_file {
        files.extend(config::load(path)?);
    }
    for path in &args.files {
        files.push(FileSource {
            path: path.clone(),
            format,
            name: path.display().to_string(),
            settings: FormatSettings {
                port: config::port_from_file_name(path),
                block_size: None,
            },
        });
    }
    if files.is_empty() {
        if let Some(found) = DEFAULT_LOGS.iter().map(Path::new).find(|p| p.exists()) {
            files.push(FileSource {
                path: found.to_path_buf(),
                format,
                name: found.display().to_string(),
                settings: FormatSettings::default(),
            });
        }
    }
    for f in &mut files {
        f.settings.block_size.get_or_insert(args.block_size);
    }
    Ok((!files.is_empty()).then_some(files))
}

const DEFAULT_STATE_DIR: &str = "/var/lib/maillog_exporter";
const POSITIONS_FILE_NAME: &str = "positions.json";

/// Where positions are saved: the flag if given (`""` disables), else in
/// systemd's `$STATE_DIRECTORY` (its first entry) if set, else in
/// [`DEFAULT_STATE_DIR`]. A default directory that is missing is created; if
/// that fails, positions are not saved (with a warning), since the exporter
/// works without them.
fn positions_file(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return (!path.as_os_str().is_empty()).then(|| path.to_path_buf());
    }
    let dir = std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| {
            let first = dirs.to_string_lossy().split(':').next()?.to_owned();
            (!first.is_empty()).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(
            dir = %dir.display(),
            error = %e,
            "cannot create the state directory: read positions will not be saved \
             (pass --tail.positions-file PATH, or \"\" to silence this)"
        );
        return None;
    }
    Some(dir.join(POSITIONS_FILE_NAME))
}

fn serve(settings: DaemonSettings) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(daemon::run(settings, daemon::shutdown_signal(), |addr| {
        tracing::info!(%addr, "listening");
    }))?;
    Ok(())
}

fn replay(
    format: &str,
    block_size: u64,
    max_line_bytes: usize,
    state: StateSettings,
    files: &[PathBuf],
) -> Result<()> {
    let format = parse_format(format)?;
    let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
    let specs: Vec<SourceSpec> = files
        .iter()
        .map(|p| SourceSpec {
            name: p.display().to_string(),
            format,
            settings: FormatSettings {
                port: config::port_from_file_name(p),
                block_size: Some(block_size),
            },
        })
        .collect();
    let mut pipeline = Pipeline::new(
        metrics.clone(),
        &specs,
        state,
        Zone::Local,
        Box::new(SystemClock),
    );
    let observer = SourceMetrics::new(
        metrics.clone(),
        specs.iter().map(|s| s.name.clone()).collect(),
    );
    for (i, path) in files.iter().enumerate() {
        let source = SourceId(i);
        if path == Path::new("-") {
            let stdin = std::io::stdin();
            pipeline.replay_reader(source, path, stdin.lock(), max_line_bytes, &observer)?;
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            pipeline.replay_reader(source, path, file, max_line_bytes, &observer)?;
        }
    }
    pipeline.flush_undetected();
    pipeline.finish_batch();
    let text = prometheus::TextEncoder::new().encode_to_string(&metrics.registry().gather())?;
    print!("{text}");
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Some(Command::Replay {
            format,
            max_line_bytes,
            max_messages,
            state_ttl,
            block_size,
            files,
        }) => {
            init_logging("warn");
            let state = StateSettings {
                max_messages,
                ttl_seconds: state_ttl.as_secs_f64(),
            };
            replay(&format, block_size, max_line_bytes, state, &files)?;
        }
        Some(Command::Demo {
            lines_per_second,
            web,
        }) => {
            init_logging(&web.log_level);
            tracing::info!("demo: replaying bundled real Postfix logs in a loop");
            serve(DaemonSettings {
                feed: Feed::Demo { lines_per_second },
                http: http_settings(&web)?,
                state: state_settings(&web),
            })?;
        }
        None => {
            let args = cli.daemon;
            init_logging(&args.web.log_level);
            let Some(files) = file_sources(&args)? else {
                eprintln!(
                    "maillog_exporter: no log to follow: neither /var/log/mail.log nor /var/log/maillog exists.\n\
                     Pass the mail log as an argument (maillog_exporter /path/to/mail.log),\n\
                     list sources in a file (--config.file sources.yml),\n\
                     or try `maillog_exporter demo` to see it work on bundled sample logs."
                );
                return Ok(ExitCode::from(2));
            };
            serve(DaemonSettings {
                feed: Feed::Files {
                    files,
                    from_beginning: args.from_beginning,
                    poll_interval: args.poll_interval,
                    max_line_bytes: args.max_line_bytes,
                    positions_file: positions_file(args.positions_file.as_deref().map(Path::new)),
                },
                http: http_settings(&args.web)?,
                state: state_settings(&args.web),
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("maillog_exporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}
