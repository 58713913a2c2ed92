//! Payloads inside strings: JSON text, or base64 / base64url of JSON (the
//! Snowplow tracker's `ue_px` and `cx`). Decoded to walk the rules inside,
//! then encoded back the way they came, padding included.

use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD};

use super::spec::Encoding;

/// How a decoded value must be encoded again.
#[derive(Clone, Copy, Debug)]
pub struct Wrapping {
    encoding: Encoding,
    padded: bool,
}

/// Decodes the JSON bytes inside `raw`. `None` if it is not what the rule
/// says it is; the caller then drops the field.
pub fn decode(encoding: Encoding, raw: &str) -> Option<(Vec<u8>, Wrapping)> {
    let padded = raw.ends_with('=');
    let bytes = match encoding {
        Encoding::Json => raw.as_bytes().to_vec(),
        Encoding::Base64Json if padded => BASE64.decode(raw.as_bytes()).ok()?,
        Encoding::Base64Json => BASE64_NOPAD.decode(raw.as_bytes()).ok()?,
        Encoding::Base64urlJson if padded => BASE64URL.decode(raw.as_bytes()).ok()?,
        Encoding::Base64urlJson => BASE64URL_NOPAD.decode(raw.as_bytes()).ok()?,
    };
    Some((bytes, Wrapping { encoding, padded }))
}

/// Encodes transformed JSON bytes back into the string form.
pub fn encode(w: Wrapping, json: &[u8]) -> String {
    match (w.encoding, w.padded) {
        // The walker writes valid UTF-8 JSON; lossy only guards the invariant.
        (Encoding::Json, _) => String::from_utf8_lossy(json).into_owned(),
        (Encoding::Base64Json, true) => BASE64.encode(json),
        (Encoding::Base64Json, false) => BASE64_NOPAD.encode(json),
        (Encoding::Base64urlJson, true) => BASE64URL.encode(json),
        (Encoding::Base64urlJson, false) => BASE64URL_NOPAD.encode(json),
    }
}
