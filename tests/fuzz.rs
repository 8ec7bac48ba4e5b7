//! No panic on any input: random bytes and mutated real lines through the
//! parsers and the whole pipeline (property-based fuzzing with proptest).

use maillog_exporter::metrics::{BuildInfo, Metrics};
use maillog_exporter::parser::time::{FixedClock, Zone};
use maillog_exporter::parser::{postfix, Format};
use maillog_exporter::pipeline::{Pipeline, SourceSpec};
use maillog_exporter::source::SourceId;
use maillog_exporter::state::StateSettings;
use proptest::prelude::*;
use std::sync::Arc;

fn real_lines() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/postfix");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let data = std::fs::read(&path).unwrap();
            out.extend(
                data.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    out
}

fn pipeline() -> Pipeline {
    let spec = [
        SourceSpec::new("fuzz", Some(Format::Postfix)),
        SourceSpec::new("fuzz-auto", None),
    ];
    Pipeline::new(
        Arc::new(Metrics::new(&BuildInfo::CURRENT)),
        &spec,
        StateSettings {
            max_messages: 64,
            ttl_seconds: 3600.0,
        },
        Zone::Fixed(0),
        Box::new(FixedClock(1_795_000_000.0)),
    )
}

/// A real line with some bytes replaced, inserted or cut.
fn mutated_line() -> impl Strategy<Value = Vec<u8>> {
    let lines = real_lines();
    (
        0..lines.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..8),
    )
        .prop_map(move |(i, edits)| {
            let mut line = lines[i].clone();
            for (pos, byte, op) in edits {
                if line.is_empty() {
                    line.push(byte);
                    continue;
                }
                let p = pos % line.len();
                match op {
                    0 => line[p] = byte,
                    1 => line.insert(p, byte),
                    2 => line.truncate(p),
                    _ => {
                        line.remove(p);
                    }
                }
            }
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = postfix::parse(&line);
        let _ = Format::detect(&line);
        let mut p = pipeline();
        p.process_line(SourceId(0), &line);
        p.process_line(SourceId(1), &line);
    }

    #[test]
    fn mutated_real_lines_never_panic(lines in proptest::collection::vec(mutated_line(), 1..20)) {
        let mut p = pipeline();
        for line in &lines {
            let _ = postfix::parse(line);
            p.process_line(SourceId(0), line);
            p.process_line(SourceId(1), line);
        }
        p.finish_batch();
    }
}
