//! Server-Sent Events: each event's `data` is a JSON document transformed by
//! the rules; the stream is rewritten event by event as it arrives.
//!
//! Kept: `event`, `id` and `retry` fields (the protocol needs them to resume).
//! Comments keep the `:` that holds connections open but lose their text.
//! An event whose data is not JSON is dropped, not forwarded raw. Memory is
//! bounded by the largest event (`Limits::max_line_len`).

use super::error::{EngineError, Reason};
use super::{Engine, Stats};

#[derive(Debug, Default)]
pub struct SseStream {
    carry: Vec<u8>,
    events: u64,
    stats: Stats,
}

impl SseStream {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Transforms every event completed by `chunk`, appending to `out`.
    pub fn push(
        &mut self,
        engine: &Engine,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        self.carry.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = event_end(&self.carry[start..]) {
            let (len, sep) = end;
            let event = self.carry[start..start + len].to_vec();
            self.event(engine, &event, out);
            start += len + sep;
        }
        self.carry.drain(..start);
        let limit = engine.limits().max_line_len;
        if self.carry.len() > limit {
            return Err(EngineError {
                offset: limit,
                line: Some(self.events + 1),
                reason: Reason::LineTooLong { limit },
            });
        }
        Ok(())
    }

    /// Ends the stream: an unterminated last event is dropped, as a browser
    /// would drop it.
    pub fn finish(self) -> Stats {
        self.stats
    }

    fn event(&mut self, engine: &Engine, event: &[u8], out: &mut Vec<u8>) {
        self.events += 1;
        let mut data: Vec<u8> = Vec::new();
        let mut has_data = false;
        let mut fields: Vec<&[u8]> = Vec::new();
        let mut comment = false;
        for line in event.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line[0] == b':' {
                comment = true;
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &b""[..]),
            };
            match name {
                b"data" => {
                    if has_data {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(value);
                    has_data = true;
                }
                b"event" | b"id" | b"retry" => fields.push(line),
                _ => {}
            }
        }
        if !has_data {
            if comment && fields.is_empty() {
                out.extend_from_slice(b":\n\n");
            } else if !fields.is_empty() {
                for f in fields {
                    out.extend_from_slice(f);
                    out.push(b'\n');
                }
                out.push(b'\n');
            }
            return;
        }
        let mut json = Vec::with_capacity(data.len());
        match engine.json(&data, &mut json) {
            Ok(stats) => {
                self.stats += stats;
                for f in fields {
                    out.extend_from_slice(f);
                    out.push(b'\n');
                }
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"\n\n");
            }
            Err(_) => self.stats.dropped += 1,
        }
    }
}

/// Finds the end of the first event: its length and the separator length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}
