//! Payloads inside strings: JSON text, or base64 / base64url of JSON (the
//! Snowplow tracker's `ue_px` and `cx`), or either (Mixpanel's `data`).
//! Decoded to walk the rules inside, then encoded back the way they came,
//! padding included.

use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD};

use super::spec::Encoding;

/// How a decoded value must be encoded again.
#[derive(Clone, Copy, Debug)]
pub struct Wrapping {
    /// Never `JsonOrBase64`: the form actually found.
    encoding: Encoding,
    padded: bool,
}

/// Decodes the JSON bytes inside `raw`. `None` if it is not what the rule
/// says it is; the caller then drops the field.
pub fn decode(encoding: Encoding, raw: &str) -> Option<(Vec<u8>, Wrapping)> {
    let encoding = match encoding {
        Encoding::JsonOrBase64 => return either(raw),
        e => e,
    };
    let padded = raw.ends_with('=');
    let bytes = match encoding {
        Encoding::Json => raw.as_bytes().to_vec(),
        Encoding::Base64Json if padded => BASE64.decode(raw.as_bytes()).ok()?,
        Encoding::Base64Json => BASE64_NOPAD.decode(raw.as_bytes()).ok()?,
        Encoding::Base64urlJson if padded => BASE64URL.decode(raw.as_bytes()).ok()?,
        Encoding::Base64urlJson => BASE64URL_NOPAD.decode(raw.as_bytes()).ok()?,
        Encoding::JsonOrBase64 => unreachable!("resolved above"),
    };
    Some((bytes, Wrapping { encoding, padded }))
}

/// `json-or-base64`: JSON objects and arrays start with `{` or `[`, which no
/// base64 alphabet has, so those are JSON text. Anything else is base64 of
/// JSON (surrounding whitespace ignored), standard alphabet first, then
/// URL-safe; a string that is neither is read as JSON text, and the walk
/// that follows refuses it unless it is a JSON scalar.
fn either(raw: &str) -> Option<(Vec<u8>, Wrapping)> {
    let json = Wrapping {
        encoding: Encoding::Json,
        padded: false,
    };
    if matches!(raw.trim_start().as_bytes().first(), Some(b'{' | b'[')) {
        return Some((raw.as_bytes().to_vec(), json));
    }
    let trimmed = raw.trim();
    [Encoding::Base64Json, Encoding::Base64urlJson]
        .into_iter()
        .find_map(|e| decode(e, trimmed))
        .or_else(|| Some((raw.as_bytes().to_vec(), json)))
}

/// Encodes transformed JSON bytes back into the string form.
pub fn encode(w: Wrapping, json: &[u8]) -> String {
    match (w.encoding, w.padded) {
        // The walker writes valid UTF-8 JSON; lossy only guards the invariant.
        (Encoding::Json | Encoding::JsonOrBase64, _) => String::from_utf8_lossy(json).into_owned(),
        (Encoding::Base64Json, true) => BASE64.encode(json),
        (Encoding::Base64Json, false) => BASE64_NOPAD.encode(json),
        (Encoding::Base64urlJson, true) => BASE64URL.encode(json),
        (Encoding::Base64urlJson, false) => BASE64URL_NOPAD.encode(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &[u8] =
        br#"{"event":"Webinar Joined","properties":{"distinct_id":"u-1","n":"\u00fc?>"}}"#;

    /// Decodes `raw` as `json-or-base64`, checks the bytes, and returns what
    /// `encode` makes of `DOC` under the wrapping found.
    fn round_trip(raw: &str) -> String {
        let (bytes, w) = decode(Encoding::JsonOrBase64, raw).expect("decodes");
        assert_eq!(bytes, DOC, "from {raw}");
        encode(w, DOC)
    }

    #[test]
    fn json_or_base64_reads_json_text_and_writes_json_text() {
        let text = std::str::from_utf8(DOC).unwrap();
        assert_eq!(round_trip(text), text);
        // An array (a batch) and leading whitespace are JSON too.
        let (bytes, w) = decode(Encoding::JsonOrBase64, " [1,2]").unwrap();
        assert_eq!(bytes, b" [1,2]");
        assert_eq!(encode(w, b"[1]"), "[1]");
    }

    #[test]
    fn json_or_base64_reads_base64_and_writes_it_back_the_same_way() {
        // DOC's length is not a multiple of 3, so padded and unpadded differ;
        // its `?>` gives `/` and `+` in the standard alphabet.
        assert_ne!(DOC.len() % 3, 0);
        let padded = BASE64.encode(DOC);
        assert!(padded.ends_with('='));
        assert!(padded.contains('+') || padded.contains('/'), "{padded}");
        assert_eq!(round_trip(&padded), padded);
        let bare = BASE64_NOPAD.encode(DOC);
        assert_eq!(round_trip(&bare), bare);
        // URL-safe, padded or not: the same alphabet comes back.
        let url = BASE64URL.encode(DOC);
        assert!(url.contains('-') || url.contains('_'), "{url}");
        assert_eq!(round_trip(&url), url);
        let url_bare = BASE64URL_NOPAD.encode(DOC);
        assert_eq!(round_trip(&url_bare), url_bare);
        // A trailing newline (a body written by hand) is not part of it.
        assert_eq!(round_trip(&format!("{padded}\n")), padded);
    }

    #[test]
    fn json_or_base64_falls_back_to_json_text_for_anything_else() {
        // Not base64 in either alphabet: handed on as JSON text, which the
        // walk then accepts (a scalar) or refuses (the field is dropped).
        for raw in ["\"text\"", "not base64!", "ab=c"] {
            let (bytes, w) = decode(Encoding::JsonOrBase64, raw).unwrap();
            assert_eq!(bytes, raw.as_bytes());
            assert_eq!(encode(w, b"null"), "null");
        }
    }

    #[test]
    fn fixed_encodings_refuse_the_other_forms() {
        let padded = BASE64.encode(DOC);
        assert!(padded.contains('+') || padded.contains('/'), "{padded}");
        assert!(decode(Encoding::Base64urlJson, &padded).is_none());
        assert!(decode(Encoding::Base64Json, &BASE64URL.encode(DOC)).is_none());
        let (bytes, w) = decode(Encoding::Base64Json, &padded).unwrap();
        assert_eq!(bytes, DOC);
        assert_eq!(encode(w, DOC), padded);
    }
}
