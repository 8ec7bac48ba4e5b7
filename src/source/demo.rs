//! The demo source: bundled real logs replayed in a loop, so `demo` shows
//! live numbers without a mail server.
//!
//! Lines are sent at a steady pace; classic syslog stamps are rewritten to
//! the current local time so freshness metrics look like a live server's.

use super::{LineBatch, SourceId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A real Postfix 3.7 log recorded on loopback (see tests/fixtures/README.md).
pub const POSTFIX_LAB_LOG: &[u8] =
    include_bytes!("../../tests/fixtures/postfix/real_postfix37_lab.log");
/// A contiguous excerpt of a real production Postfix log.
pub const POSTFIX_PRODUCTION_EXCERPT: &[u8] =
    include_bytes!("../../tests/fixtures/postfix/kdent_conch_excerpt.log");

/// Replaces a leading `Mmm dd hh:mm:ss` stamp with `stamp`; other lines are
/// copied unchanged.
pub fn restamp(line: &[u8], stamp: &[u8; 15], out: &mut Vec<u8>) {
    let has_stamp =
        line.len() > 15 && crate::parser::time::parse_syslog_stamp(&line[..15]).is_some();
    if has_stamp {
        out.extend_from_slice(stamp);
        out.extend_from_slice(&line[15..]);
    } else {
        out.extend_from_slice(line);
    }
}

fn now_stamp() -> [u8; 15] {
    let text = chrono::Local::now().format("%b %e %H:%M:%S").to_string();
    let mut stamp = [b' '; 15];
    for (slot, b) in stamp.iter_mut().zip(text.bytes()) {
        *slot = b;
    }
    stamp
}

/// Sends `log`'s lines to `tx` as `source`, `lines_per_second` at a time,
/// from the start again after the last line, until `stop` is set or the
/// receiver is gone.
pub fn spawn_demo(
    log: &'static [u8],
    source: SourceId,
    lines_per_second: usize,
    tx: tokio::sync::mpsc::Sender<LineBatch>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let per_tick = (lines_per_second / 10).max(1);
    std::thread::Builder::new()
        .name("demo-source".into())
        .spawn(move || {
            let lines: Vec<&[u8]> = log.split_inclusive(|&b| b == b'\n').collect();
            if lines.is_empty() {
                return;
            }
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                let stamp = now_stamp();
                let mut data = Vec::with_capacity(per_tick * 200);
                for _ in 0..per_tick {
                    restamp(lines[next], &stamp, &mut data);
                    if !data.ends_with(b"\n") {
                        data.push(b'\n');
                    }
                    next = (next + 1) % lines.len();
                }
                if tx
                    .blocking_send(LineBatch {
                        source,
                        data,
                        position: None,
                    })
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restamps_syslog_lines_only() {
        let mut out = Vec::new();
        restamp(
            b"Nov 21 10:00:00 mx1 postfix/qmgr[1]: ABCDE12345: removed\n",
            b"Jan  2 03:04:05",
            &mut out,
        );
        assert_eq!(
            out,
            b"Jan  2 03:04:05 mx1 postfix/qmgr[1]: ABCDE12345: removed\n"
        );
        out.clear();
        restamp(
            b"2020-03-19T09:29:04.507835+00:00 h p[1]: m\n",
            b"Jan  2 03:04:05",
            &mut out,
        );
        assert_eq!(out, b"2020-03-19T09:29:04.507835+00:00 h p[1]: m\n");
    }

    #[test]
    fn bundled_logs_are_postfix() {
        for log in [POSTFIX_LAB_LOG, POSTFIX_PRODUCTION_EXCERPT] {
            let first = log.split(|&b| b == b'\n').next().unwrap_or_default();
            assert!(crate::parser::Format::detect(first).is_some() || log.is_empty());
        }
    }
}
