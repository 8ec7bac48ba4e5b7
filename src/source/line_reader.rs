//! Cutting a byte stream into bounded, complete lines.
//!
//! [`LineAssembler`] is fed raw chunks in file order (any size, split
//! anywhere) and appends every complete line (ending with `\n`) to the
//! caller's output buffer. A trailing partial line is held back until its
//! newline arrives. A line whose content (excluding the `\n`) is longer than
//! the limit is skipped entirely, up to and including its newline, and
//! reported once through the `too_long` callback; the following line is
//! untouched. Bytes are never inspected beyond looking for `\n`, so invalid
//! UTF-8 passes through. No I/O, no allocation beyond the partial-line buffer,
//! which never grows past the limit.

use memchr::memchr;

/// State of the line the assembler is in the middle of.
#[derive(Debug, Default)]
pub(crate) struct LineAssembler {
    /// Longest line content (excluding `\n`) that is passed on.
    max_line_bytes: usize,
    /// Start of the current line, when it is short enough to be kept.
    /// Invariant: `partial.len() <= max_line_bytes` and it holds no `\n`.
    partial: Vec<u8>,
    /// Set while discarding the rest of a line (oversized, or cut at the
    /// start of reading); holds how many of its bytes were consumed so far.
    /// Invariant: when `Some`, `partial` is empty.
    skipping: Option<usize>,
}

impl LineAssembler {
    pub(crate) fn new(max_line_bytes: usize) -> Self {
        LineAssembler {
            max_line_bytes,
            partial: Vec::new(),
            skipping: None,
        }
    }

    /// Consumes `data`: complete lines go to `out`, the rest is held back.
    /// `too_long(len)` is called once for each oversized line, as soon as it
    /// is known to be too long, with its length so far.
    pub(crate) fn push(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<u8>,
        mut too_long: impl FnMut(usize),
    ) {
        while !data.is_empty() {
            match memchr(b'\n', data) {
                Some(i) => {
                    let (line, rest) = data.split_at(i + 1);
                    data = rest;
                    if self.skipping.take().is_some() {
                        // The end of a line already reported (or cut): drop it.
                        continue;
                    }
                    let len = self.partial.len().saturating_add(i);
                    if len > self.max_line_bytes {
                        too_long(len);
                    } else {
                        out.extend_from_slice(&self.partial);
                        out.extend_from_slice(line);
                    }
                    self.partial.clear();
                }
                None => {
                    if let Some(skipped) = self.skipping.as_mut() {
                        *skipped = skipped.saturating_add(data.len());
                    } else {
                        let len = self.partial.len().saturating_add(data.len());
                        if len > self.max_line_bytes {
                            too_long(len);
                            self.partial.clear();
                            self.skipping = Some(len);
                        } else {
                            self.partial.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
    }

    /// Bytes consumed but not passed on yet: the partial line, or the part
    /// of a skipped line seen so far. The stream position minus this is the
    /// start of the first line not yet dealt with.
    pub(crate) fn pending(&self) -> usize {
        self.skipping.unwrap_or(self.partial.len())
    }

    /// Ends the stream: a kept partial line is passed on with a `\n`
    /// appended; a line being skipped just ends.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            out.extend_from_slice(&self.partial);
            out.push(b'\n');
        }
        self.reset();
    }

    /// Forgets the current line without passing anything on.
    pub(crate) fn reset(&mut self) {
        self.partial.clear();
        self.skipping = None;
    }

    /// Discards everything up to and including the next `\n` without
    /// reporting it (used when reading starts in the middle of a line).
    pub(crate) fn skip_silently(&mut self) {
        self.partial.clear();
        self.skipping = Some(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(asm: &mut LineAssembler, chunks: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut long = Vec::new();
        for chunk in chunks {
            asm.push(chunk, &mut out, |len| long.push(len));
        }
        (out, long)
    }

    #[test]
    fn lines_split_anywhere_come_out_whole() {
        let mut asm = LineAssembler::new(100);
        let (out, long) = feed(&mut asm, &[b"ab", b"c\nde", b"f\n\ng", b"h"]);
        assert_eq!(out, b"abc\ndef\n\n");
        assert!(long.is_empty());
        assert_eq!(asm.pending(), 2);
        let mut out = Vec::new();
        asm.finish(&mut out);
        assert_eq!(out, b"gh\n");
        assert_eq!(asm.pending(), 0);
    }

    #[test]
    fn limit_counts_content_without_newline() {
        let mut asm = LineAssembler::new(3);
        let (out, long) = feed(&mut asm, &[b"abc\nabcd\nx\n"]);
        assert_eq!(out, b"abc\nx\n");
        assert_eq!(long, vec![4]);
    }

    #[test]
    fn oversized_line_across_chunks_is_reported_once() {
        let mut asm = LineAssembler::new(4);
        let (out, long) = feed(&mut asm, &[b"ok\nabc", b"defgh", b"ijk", b"l\nnext\n"]);
        assert_eq!(out, b"ok\nnext\n");
        assert_eq!(long, vec![8]);
        assert_eq!(asm.pending(), 0);
    }

    #[test]
    fn pending_counts_skipped_bytes() {
        let mut asm = LineAssembler::new(2);
        let (_, long) = feed(&mut asm, &[b"abc", b"de"]);
        assert_eq!(long, vec![3]);
        assert_eq!(asm.pending(), 5);
    }

    #[test]
    fn finish_while_skipping_emits_nothing() {
        let mut asm = LineAssembler::new(2);
        let (_, _) = feed(&mut asm, &[b"abcdef"]);
        let mut out = Vec::new();
        asm.finish(&mut out);
        assert!(out.is_empty());
        let (out, long) = feed(&mut asm, &[b"x\n"]);
        assert_eq!(out, b"x\n");
        assert!(long.is_empty());
    }

    #[test]
    fn skip_silently_drops_rest_of_line_without_report() {
        let mut asm = LineAssembler::new(100);
        asm.skip_silently();
        let (out, long) = feed(&mut asm, &[b"tail of line\nwhole\n"]);
        assert_eq!(out, b"whole\n");
        assert!(long.is_empty());
    }

    #[test]
    fn zero_limit_passes_only_empty_lines() {
        let mut asm = LineAssembler::new(0);
        let (out, long) = feed(&mut asm, &[b"\na\n\n"]);
        assert_eq!(out, b"\n\n");
        assert_eq!(long, vec![1]);
    }
}
