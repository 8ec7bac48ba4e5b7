//! The `maillog_exporter` binary: flags, settings, run.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use maillog_exporter::metrics::{BuildInfo, Metrics, SourceMetrics};
use maillog_exporter::parser::time::{SystemClock, Zone};
use maillog_exporter::parser::Format;
use maillog_exporter::pipeline::{Pipeline, SourceSpec};
use maillog_exporter::source::SourceId;
use maillog_exporter::state::StateSettings;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "maillog_exporter",
    version,
    about = "Prometheus exporter for mail server logs"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read FILEs from start to end and print the final metrics.
    Replay {
        /// Log format (default: detected from the content).
        #[arg(long = "log.format", value_name = "NAME")]
        format: Option<String>,
        /// Files to read; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_format(name: Option<&str>) -> Result<Option<Format>> {
    match name {
        None | Some("auto") => Ok(None),
        Some(n) => match Format::from_name(n) {
            Some(f) => Ok(Some(f)),
            None => bail!(
                "unknown log format {n:?}; known formats: auto, {}",
                Format::names()
            ),
        },
    }
}

fn replay(format: Option<&str>, files: &[PathBuf]) -> Result<()> {
    let format = parse_format(format)?;
    let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
    let specs: Vec<SourceSpec> = files
        .iter()
        .map(|p| SourceSpec {
            name: p.display().to_string(),
            format,
        })
        .collect();
    let mut pipeline = Pipeline::new(
        metrics.clone(),
        &specs,
        StateSettings::default(),
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
            pipeline.replay_reader(source, path, stdin.lock(), 1 << 20, &observer)?;
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            pipeline.replay_reader(source, path, file, 1 << 20, &observer)?;
        }
    }
    pipeline.flush_undetected();
    pipeline.finish_batch();
    let text = prometheus::TextEncoder::new().encode_to_string(&metrics.registry().gather())?;
    print!("{text}");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Replay { format, files }) => replay(format.as_deref(), &files),
        None => bail!("not yet"),
    }
}
