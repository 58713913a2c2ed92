//! NDJSON: one JSON document per line, transformed as the bytes arrive.
//!
//! Complete lines in a chunk are transformed straight from the chunk; only
//! a partial last line is carried to the next push. Memory is bounded by the
//! longest line (`Limits::max_line_len`), not by the body.

use std::sync::Arc;

use super::error::{EngineError, Reason};
use super::unknown::{UnknownFields, UnknownTally};
use super::{Engine, Stats};

/// The state of a streaming NDJSON transform: push chunks, then `finish`.
/// It holds no engine, so a body adapter can keep it next to an
/// `Arc<Engine>` and pass the engine in on every call.
#[derive(Debug, Default)]
pub struct NdjsonStream {
    carry: Vec<u8>,
    line: u64,
    stats: Stats,
    /// Unknown-field report: collected per chunk, added to the tally.
    report: Option<Box<(UnknownFields, Arc<UnknownTally>)>>,
}

impl NdjsonStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the unnamed members dropped from every line into `tally`
    /// (after each chunk).
    pub fn reporting_to(mut self, tally: Arc<UnknownTally>) -> Self {
        self.report = Some(Box::new((UnknownFields::new(), tally)));
        self
    }

    /// Transforms every line completed by `chunk`, appending to `out`.
    pub fn push(
        &mut self,
        engine: &Engine,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let Some(mut report) = self.report.take() else {
            return self.push_with(engine, chunk, out, None);
        };
        let res = self.push_with(engine, chunk, out, Some(&mut report.0));
        report.1.merge(&report.0);
        report.0.clear();
        self.report = Some(report);
        res
    }

    pub(crate) fn push_with(
        &mut self,
        engine: &Engine,
        mut chunk: &[u8],
        out: &mut Vec<u8>,
        mut unknown: Option<&mut UnknownFields>,
    ) -> Result<(), EngineError> {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            if self.carry.is_empty() {
                self.line(engine, head, out, unknown.as_deref_mut())?;
            } else {
                self.carry.extend_from_slice(head);
                self.check_len(engine)?;
                let line = std::mem::take(&mut self.carry);
                let res = self.line(engine, &line, out, unknown.as_deref_mut());
                self.carry = line;
                self.carry.clear();
                res?;
            }
            chunk = rest;
        }
        self.carry.extend_from_slice(chunk);
        self.check_len(engine)
    }

    /// Transforms a last line without a newline; returns the totals.
    pub fn finish(mut self, engine: &Engine, out: &mut Vec<u8>) -> Result<Stats, EngineError> {
        let Some(mut report) = self.report.take() else {
            return self.finish_with(engine, out, None);
        };
        let res = self.finish_with(engine, out, Some(&mut report.0));
        report.1.merge(&report.0);
        res
    }

    pub(crate) fn finish_with(
        mut self,
        engine: &Engine,
        out: &mut Vec<u8>,
        unknown: Option<&mut UnknownFields>,
    ) -> Result<Stats, EngineError> {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(engine, &line, out, unknown)?;
        }
        Ok(self.stats)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn check_len(&self, engine: &Engine) -> Result<(), EngineError> {
        let limit = engine.limits().max_line_len;
        if self.carry.len() > limit {
            return Err(EngineError {
                offset: limit,
                line: Some(self.line + 1),
                reason: Reason::LineTooLong { limit },
            });
        }
        Ok(())
    }

    fn line(
        &mut self,
        engine: &Engine,
        line: &[u8],
        out: &mut Vec<u8>,
        unknown: Option<&mut UnknownFields>,
    ) -> Result<(), EngineError> {
        self.line += 1;
        let limit = engine.limits().max_line_len;
        if line.len() > limit {
            return Err(EngineError {
                offset: limit,
                line: Some(self.line),
                reason: Reason::LineTooLong { limit },
            });
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Blank lines separate nothing and carry nothing: skipped.
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let before = out.len();
        let stats = engine.json_with(line, out, unknown).map_err(|mut e| {
            e.line = Some(self.line);
            e
        })?;
        // A withheld event (no consent, objection) leaves no line at all.
        if out.len() > before {
            out.push(b'\n');
        }
        self.stats += stats;
        Ok(())
    }
}
