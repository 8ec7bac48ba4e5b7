//! Parser and pipeline throughput on real Postfix lines.
//!
//! `cargo bench --bench parser`. The input is the real Postfix logs in
//! tests/fixtures/postfix (lab recording and a production excerpt),
//! repeated; throughput is reported in bytes (criterion) and can be turned
//! into lines/s with the line count printed at start.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use maillog_exporter::metrics::{BuildInfo, Metrics};
use maillog_exporter::parser::time::{FixedClock, Zone};
use maillog_exporter::parser::{postfix, Format};
use maillog_exporter::pipeline::{Pipeline, SourceSpec};
use maillog_exporter::source::SourceId;
use maillog_exporter::state::StateSettings;
use std::sync::Arc;

fn corpus() -> Vec<u8> {
    let mut one = Vec::new();
    for name in [
        "real_postfix37_lab.log",
        "kdent_conch_excerpt.log",
        "oleg_medovikov_mail_server_anal.log",
    ] {
        let path = format!(
            "{}/tests/fixtures/postfix/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        one.extend(std::fs::read(path).unwrap_or_default());
    }
    one.repeat(50)
}

fn parse_lines(c: &mut Criterion) {
    let data = corpus();
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("corpus: {} lines, {} bytes", lines.len(), data.len());
    let mut group = c.benchmark_group("postfix");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            let mut events = 0usize;
            for line in &lines {
                if let maillog_exporter::parser::LineOutcome::Parsed(e) =
                    postfix::parse(black_box(line)).outcome
                {
                    events += e.len();
                }
            }
            events
        })
    });
    group.bench_function("pipeline", |b| {
        let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
        let spec = [SourceSpec::new("bench", Some(Format::Postfix))];
        let mut pipeline = Pipeline::new(
            metrics,
            &spec,
            StateSettings::default(),
            Zone::Fixed(0),
            Box::new(FixedClock(1_795_000_000.0)),
        );
        b.iter(|| {
            for line in &lines {
                pipeline.process_line(SourceId(0), black_box(line));
            }
            pipeline.finish_batch();
        })
    });
    group.finish();
}

criterion_group!(benches, parse_lines);
criterion_main!(benches);
