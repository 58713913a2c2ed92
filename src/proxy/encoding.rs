//! Content-Encoding: decode what the client compressed, re-encode the
//! rewritten body the same way. Decoders write into a capped sink, so a
//! decompression bomb stops at the cap (413) instead of filling memory.

use std::borrow::Cow;
use std::io::{self, Write};

use http::HeaderValue;

use super::respond::ProxyError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    /// Parses a Content-Encoding header. Stacked codings (`gzip, br`) are
    /// refused: no client of ours sends them and each layer is a bomb risk.
    pub fn from_header(v: Option<&HeaderValue>) -> Result<Coding, ProxyError> {
        let Some(v) = v else {
            return Ok(Coding::Identity);
        };
        let v = v
            .to_str()
            .map_err(|_| ProxyError::UnsupportedEncoding)?
            .trim();
        Ok(match v.to_ascii_lowercase().as_str() {
            "" | "identity" => Coding::Identity,
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            "br" => Coding::Br,
            "zstd" => Coding::Zstd,
            _ => return Err(ProxyError::UnsupportedEncoding),
        })
    }

    pub fn header_value(self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(match self {
            Coding::Identity => return None,
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }))
    }
}

/// A Vec that refuses to grow past `cap` bytes in total.
struct CappedSink {
    buf: Vec<u8>,
    total: u64,
    cap: u64,
}

impl Write for CappedSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.total += data.len() as u64;
        if self.total > self.cap {
            return Err(io::Error::other(CapExceeded));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct CapExceeded;

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decoded size cap exceeded")
    }
}

impl std::error::Error for CapExceeded {}

enum Dec {
    Identity(CappedSink),
    Gzip(flate2::write::MultiGzDecoder<CappedSink>),
    Deflate(flate2::write::ZlibDecoder<CappedSink>),
    Br(Box<brotli::DecompressorWriter<CappedSink>>),
    Zstd(zstd::stream::write::Decoder<'static, CappedSink>),
}

/// Streaming decoder: push compressed bytes, take decoded bytes.
pub struct Decoder {
    dec: Dec,
    cap: u64,
    /// Streams bound what one chunk may expand to, not the whole stream:
    /// memory stays bounded while the stream itself may be unbounded.
    streaming: bool,
}

impl Decoder {
    /// A decoder for a stream: `cap` bounds the output of each chunk.
    pub fn streaming(coding: Coding, cap: u64) -> Result<Self, ProxyError> {
        let mut d = Self::new(coding, cap)?;
        d.streaming = true;
        Ok(d)
    }

    /// A decoder for a whole body: `cap` bounds its total decoded size.
    pub fn new(coding: Coding, cap: u64) -> Result<Self, ProxyError> {
        let sink = CappedSink {
            buf: Vec::new(),
            total: 0,
            cap,
        };
        let dec = match coding {
            Coding::Identity => Dec::Identity(sink),
            Coding::Gzip => Dec::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            Coding::Deflate => Dec::Deflate(flate2::write::ZlibDecoder::new(sink)),
            Coding::Br => Dec::Br(Box::new(brotli::DecompressorWriter::new(sink, 8192))),
            Coding::Zstd => Dec::Zstd(
                zstd::stream::write::Decoder::new(sink).map_err(|_| ProxyError::Internal)?,
            ),
        };
        Ok(Self {
            dec,
            cap,
            streaming: false,
        })
    }

    fn map(&self, e: io::Error) -> ProxyError {
        if e.get_ref().is_some_and(|i| i.is::<CapExceeded>()) {
            ProxyError::DecodedTooLarge { limit: self.cap }
        } else {
            ProxyError::BadEncoding
        }
    }

    /// Decodes a chunk; returns what became available. The decoders hold
    /// decoded output back until their next write unless flushed, which
    /// would delay a streamed line until the next chunk arrives.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<u8>, ProxyError> {
        let res = match &mut self.dec {
            Dec::Identity(s) => s.write_all(data),
            Dec::Gzip(d) => d.write_all(data).and_then(|()| d.flush()),
            Dec::Deflate(d) => d.write_all(data).and_then(|()| d.flush()),
            Dec::Br(d) => d.write_all(data).and_then(|()| d.flush()),
            Dec::Zstd(d) => d.write_all(data).and_then(|()| d.flush()),
        };
        res.map_err(|e| self.map(e))?;
        let streaming = self.streaming;
        let sink = self.sink();
        if streaming {
            sink.total = 0;
        }
        Ok(std::mem::take(&mut sink.buf))
    }

    /// Ends the stream; a truncated compressed body is an error.
    pub fn finish(mut self) -> Result<Vec<u8>, ProxyError> {
        let res = match &mut self.dec {
            Dec::Identity(_) => Ok(()),
            Dec::Gzip(d) => d.try_finish(),
            Dec::Deflate(d) => d.try_finish(),
            Dec::Br(d) => d.flush().and_then(|()| d.close()),
            Dec::Zstd(d) => d.flush(),
        };
        res.map_err(|e| self.map(e))?;
        Ok(std::mem::take(&mut self.sink().buf))
    }

    fn sink(&mut self) -> &mut CappedSink {
        match &mut self.dec {
            Dec::Identity(s) => s,
            Dec::Gzip(d) => d.get_mut(),
            Dec::Deflate(d) => d.get_mut(),
            Dec::Br(d) => d.get_mut(),
            Dec::Zstd(d) => d.get_mut(),
        }
    }
}

enum Enc {
    Identity(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// Streaming encoder: push plain bytes, take compressed bytes. `flush`
/// emits everything pushed so far, so a streamed line leaves at once.
pub struct Encoder {
    enc: Enc,
}

impl Encoder {
    pub fn new(coding: Coding) -> Self {
        let enc = match coding {
            Coding::Identity => Enc::Identity(Vec::new()),
            Coding::Gzip => Enc::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            Coding::Deflate => Enc::Deflate(flate2::write::ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            Coding::Br => Enc::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                8192,
                4,
                22,
            ))),
            Coding::Zstd => Enc::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd level 3 is valid"),
            ),
        };
        Self { enc }
    }

    /// Compresses `data` and flushes; returns the bytes ready to send.
    pub fn push(&mut self, data: &[u8], flush: bool) -> Vec<u8> {
        // Writing to a Vec cannot fail; the encoders add no failure modes.
        let _ = match &mut self.enc {
            Enc::Identity(v) => v.write_all(data),
            Enc::Gzip(e) => e
                .write_all(data)
                .and_then(|()| if flush { e.flush() } else { Ok(()) }),
            Enc::Deflate(e) => e
                .write_all(data)
                .and_then(|()| if flush { e.flush() } else { Ok(()) }),
            Enc::Br(e) => e
                .write_all(data)
                .and_then(|()| if flush { e.flush() } else { Ok(()) }),
            Enc::Zstd(e) => e
                .write_all(data)
                .and_then(|()| if flush { e.flush() } else { Ok(()) }),
        };
        std::mem::take(self.buf())
    }

    pub fn finish(self) -> Vec<u8> {
        match self.enc {
            Enc::Identity(v) => v,
            Enc::Gzip(e) => e.finish().unwrap_or_default(),
            Enc::Deflate(e) => e.finish().unwrap_or_default(),
            Enc::Br(e) => e.into_inner(),
            Enc::Zstd(e) => e.finish().unwrap_or_default(),
        }
    }

    fn buf(&mut self) -> &mut Vec<u8> {
        match &mut self.enc {
            Enc::Identity(v) => v,
            Enc::Gzip(e) => e.get_mut(),
            Enc::Deflate(e) => e.get_mut(),
            Enc::Br(e) => e.get_mut(),
            Enc::Zstd(e) => e.get_mut(),
        }
    }
}

/// Decodes a whole body under the cap; without a coding (the usual case)
/// the body itself, not a copy.
pub fn decode_all(coding: Coding, body: &[u8], cap: u64) -> Result<Cow<'_, [u8]>, ProxyError> {
    if coding == Coding::Identity {
        if body.len() as u64 > cap {
            return Err(ProxyError::DecodedTooLarge { limit: cap });
        }
        return Ok(Cow::Borrowed(body));
    }
    let mut d = Decoder::new(coding, cap)?;
    let mut out = d.push(body)?;
    out.extend(d.finish()?);
    Ok(Cow::Owned(out))
}

/// Encodes a whole body; without a coding, `body` is handed back as it is.
pub fn encode_all(coding: Coding, body: Vec<u8>) -> Vec<u8> {
    if coding == Coding::Identity {
        return body;
    }
    let mut e = Encoder::new(coding);
    let mut out = e.push(&body, false);
    out.extend(e.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_coding() {
        let body = br#"{"a":"hello hello hello hello"}"#.repeat(100);
        for c in [
            Coding::Identity,
            Coding::Gzip,
            Coding::Deflate,
            Coding::Br,
            Coding::Zstd,
        ] {
            let enc = encode_all(c, body.clone());
            assert_eq!(decode_all(c, &enc, 1 << 20).unwrap(), body, "{c:?}");
        }
    }

    #[test]
    fn bomb_hits_the_cap() {
        let zeros = vec![0u8; 8 << 20];
        for c in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let enc = encode_all(c, zeros.clone());
            assert!(enc.len() < 64 << 10);
            assert!(matches!(
                decode_all(c, &enc, 1 << 20),
                Err(ProxyError::DecodedTooLarge { .. })
            ));
        }
    }

    #[test]
    fn corrupt_and_truncated_bodies_are_errors() {
        let enc = encode_all(Coding::Gzip, b"x".repeat(1000));
        assert!(decode_all(Coding::Gzip, &enc[..enc.len() / 2], 1 << 20).is_err());
        assert!(decode_all(Coding::Gzip, b"not gzip at all", 1 << 20).is_err());
    }
}
