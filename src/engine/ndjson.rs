//! NDJSON: one JSON document per line, transformed as the bytes arrive.
//!
//! Complete lines in a chunk are transformed straight from the chunk; only
//! a partial last line is carried to the next push. Memory is bounded by the
//! longest line (`Limits::max_line_len`), not by the body.

use super::error::{EngineError, Reason};
use super::{Engine, Stats};

/// The state of a streaming NDJSON transform: push chunks, then `finish`.
/// It holds no engine, so a body adapter can keep it next to an
/// `Arc<Engine>` and pass the engine in on every call.
#[derive(Debug, Default)]
pub struct NdjsonStream {
    carry: Vec<u8>,
    line: u64,
    stats: Stats,
}

impl NdjsonStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Transforms every line completed by `chunk`, appending to `out`.
    pub fn push(
        &mut self,
        engine: &Engine,
        mut chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            if self.carry.is_empty() {
                self.line(engine, head, out)?;
            } else {
                self.carry.extend_from_slice(head);
                self.check_len(engine)?;
                let line = std::mem::take(&mut self.carry);
                let res = self.line(engine, &line, out);
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
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(engine, &line, out)?;
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

    fn line(&mut self, engine: &Engine, line: &[u8], out: &mut Vec<u8>) -> Result<(), EngineError> {
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
        let stats = engine.json(line, out).map_err(|mut e| {
            e.line = Some(self.line);
            e
        })?;
        out.push(b'\n');
        self.stats += stats;
        Ok(())
    }
}
