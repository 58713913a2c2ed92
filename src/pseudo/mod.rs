//! The pseudonymiser: a value of some kind in, a keyed token of the same
//! shape out.
//!
//! | kind  | output                                                          |
//! |-------|-----------------------------------------------------------------|
//! | email | `k1_<token>@pseudonym.invalid` (or the real / a chosen domain)  |
//! | name  | `k1_<token>`, or `Participant k1_<token>` with a label          |
//! | id    | `k1_<token>`                                                    |
//! | phone | `k1_<token>`                                                    |
//! | ip    | a reserved-range IP carrying the key version (see [`Pseudonymiser::ip`]), or ipcrypt-pfx |
//! | url   | the URL with userinfo removed and personal parameters tokenised |
//!
//! One `Pseudonymiser` exists per (purpose, recipient, key version). Building
//! it derives all keys; using it allocates only the output string.

pub mod aead;
pub(crate) mod hmac;
pub mod normalize;
pub mod token;
mod url;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipcrypt_rs::IpcryptPfx;

use crate::engine::plan::{EmailSpec, PseudoSpec};
use crate::engine::spec::{IpMode, Kind};
use crate::keyring::KeyMaterial;
use hmac::KeyedMac;
pub use url::PERSONAL_PARAMS;

/// The domain pseudonymised emails get unless a rule keeps or sets one.
/// `.invalid` is reserved (RFC 2606): mail to it can never be delivered.
pub const DEFAULT_EMAIL_DOMAIN: &str = "pseudonym.invalid";

/// Keyed tokens for one purpose and recipient under one key version.
pub struct Pseudonymiser {
    version: u32,
    macs: Vec<KeyedMac>,
    pfx: IpcryptPfx,
    /// AES-256-GCM key for reversible tokens of this purpose and recipient.
    aead_key: zeroize::Zeroizing<[u8; 32]>,
    /// Bound into every reversible token's associated data.
    purpose: String,
    recipient: String,
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Pseudonymiser {
    pub fn new(key: &KeyMaterial, purpose: &str, recipient: &str) -> Self {
        let macs = Kind::ALL
            .iter()
            .map(|k| {
                KeyedMac::new(&hmac::derive(
                    key,
                    &["hmac", purpose, recipient, k.as_str()],
                ))
            })
            .collect();
        Self {
            version: key.version(),
            macs,
            pfx: pfx_cipher(key, purpose, recipient),
            aead_key: hmac::derive(key, &["aead", purpose, recipient]),
            purpose: purpose.to_owned(),
            recipient: recipient.to_owned(),
        }
    }

    fn aad(&self, field: &str, version: u32) -> Vec<u8> {
        format!(
            "scrim/encrypt/v1\0purpose={}\0recipient={}\0field={field}\0version={version}",
            self.purpose, self.recipient
        )
        .into_bytes()
    }

    /// A reversible token: `e<VERSION>_<base64url(nonce || ciphertext)>`.
    /// The associated data binds purpose, recipient, field (the rule id) and
    /// version, so a token copied to another field or purpose does not open.
    pub fn encrypt(&self, field: &str, plain: &str) -> Result<String, getrandom::Error> {
        let sealed = aead::seal(
            &self.aead_key,
            &self.aad(field, self.version),
            plain.as_bytes(),
        )?;
        let mut out = format!("e{}_", self.version);
        data_encoding::BASE64URL_NOPAD.encode_append(&sealed, &mut out);
        Ok(out)
    }

    /// Opens a reversible token made under this pseudonymiser's key version.
    pub fn reveal(&self, field: &str, token: &str) -> Result<String, aead::OpenError> {
        let (version, body) = parse_encrypted(token).ok_or(aead::OpenError)?;
        if version != self.version {
            return Err(aead::OpenError);
        }
        let sealed = data_encoding::BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| aead::OpenError)?;
        let plain = aead::open(&self.aead_key, &self.aad(field, version), &sealed)?;
        String::from_utf8(plain).map_err(|_| aead::OpenError)
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    fn mac(&self, kind: Kind) -> &KeyedMac {
        &self.macs[kind as usize]
    }

    /// The bare token of an already normalised value.
    pub fn token(&self, kind: Kind, normalised: &str) -> String {
        let mut out = String::with_capacity(32);
        self.push_token(&mut out, kind, normalised);
        out
    }

    #[inline]
    pub(crate) fn push_token(&self, out: &mut String, kind: Kind, normalised: &str) {
        let digest = self.mac(kind).digest(normalised.as_bytes());
        token::write(out, self.version, &digest);
    }

    /// Applies a `pseudonymise` rule. `None` when the value cannot take the
    /// kind's shape (an IP field that holds no IP): the caller drops it.
    pub fn apply(&self, spec: &PseudoSpec, raw: &str) -> Option<String> {
        // Room for a labelled name or an email token without regrowing.
        let mut out = String::with_capacity(64);
        self.apply_into(spec, raw, &mut out).then_some(out)
    }

    /// [`apply`](Self::apply), appending to `out` (the engine reuses one
    /// buffer for every value of a document). `false`, with `out` as it
    /// was, when the value cannot take the kind's shape.
    pub fn apply_into(&self, spec: &PseudoSpec, raw: &str, out: &mut String) -> bool {
        match spec.kind {
            Kind::Email => self.email_into(raw, &spec.email, out),
            Kind::Name => self.name_into(raw, spec.label.as_deref(), out),
            Kind::Ip => match self.ip(raw, spec.ip_mode) {
                Some(ip) => push_ip(out, ip),
                None => return false,
            },
            Kind::Phone => self.push_token(out, Kind::Phone, &normalize::phone(raw)),
            Kind::Url => return self.url_into(raw, &spec.url, out),
            // Timestamps and user agents are generalised, never tokenised;
            // `compile` refuses the combination, ids take everything else.
            Kind::Id | Kind::Timestamp | Kind::UserAgent => {
                self.push_token(out, Kind::Id, normalize::id(raw))
            }
        }
        true
    }

    /// The token a subject's value gets as `kind`, as the engine would make
    /// it (for subject look-ups): bare token for emails (the recipient holds
    /// `<token>@<domain>`), the IP itself for IPs.
    pub fn subject_token(&self, kind: Kind, raw: &str) -> Option<String> {
        match kind {
            Kind::Email => Some(self.token(Kind::Email, &normalize::email(raw, false))),
            Kind::Name => Some(self.token(Kind::Name, &normalize::name(raw))),
            Kind::Phone => Some(self.token(Kind::Phone, &normalize::phone(raw))),
            Kind::Ip => self.ip(raw, IpMode::Token).map(|ip| ip.to_string()),
            Kind::Id => Some(self.id(raw)),
            Kind::Url | Kind::Timestamp | Kind::UserAgent => None,
        }
    }

    pub fn id(&self, raw: &str) -> String {
        self.token(Kind::Id, normalize::id(raw))
    }

    pub fn name(&self, raw: &str, label: Option<&str>) -> String {
        let mut out = String::with_capacity(48);
        self.name_into(raw, label, &mut out);
        out
    }

    #[inline]
    fn name_into(&self, raw: &str, label: Option<&str>, out: &mut String) {
        if let Some(label) = label {
            out.push_str(label);
            out.push(' ');
        }
        // A short name in ASCII and Latin-1 letters is lower-cased, trimmed
        // and collapsed on the stack: what `normalize::name` does for it
        // (such text is NFKC already, and its only whitespace is ASCII),
        // without allocating. ASCII text is lowered as it is collapsed;
        // Latin-1 text is lowered first (two bytes per letter).
        let mut buf = [0u8; 128];
        let lowered = if raw.len() > buf.len() {
            None
        } else if raw.is_ascii() {
            let n = raw.len();
            buf[..n].copy_from_slice(raw.as_bytes());
            Some(collapse_ascii_whitespace(
                &mut buf[..n],
                u8::to_ascii_lowercase,
            ))
        } else {
            normalize::latin1_lower_into(raw, &mut buf)
                .map(str::len)
                .map(|n| collapse_ascii_whitespace(&mut buf[..n], |&b| b))
        };
        match lowered {
            Some(len) => {
                let norm = std::str::from_utf8(&buf[..len]).expect("whole UTF-8 sequences kept");
                self.push_token(out, Kind::Name, norm);
            }
            None => self.push_token(out, Kind::Name, &normalize::name_cow(raw)),
        }
    }

    pub fn email(&self, raw: &str, spec: &EmailSpec) -> String {
        let mut out = String::with_capacity(64);
        self.email_into(raw, spec, &mut out);
        out
    }

    /// [`email`](Self::email), appending to `out`.
    #[inline]
    pub(crate) fn email_into(&self, raw: &str, spec: &EmailSpec, out: &mut String) {
        // A short address in ASCII and Latin-1 letters is lower-cased on the
        // stack: what `normalize::email` does for it, without allocating.
        let mut buf = [0u8; 128];
        let trimmed = raw.trim();
        let short = (!spec.strip_plus_tag && trimmed.len() <= buf.len())
            .then(|| normalize::latin1_lower_into(trimmed, &mut buf))
            .flatten();
        let norm = match short {
            Some(lower) => std::borrow::Cow::Borrowed(lower),
            None => normalize::email(raw, spec.strip_plus_tag),
        };
        self.push_token(out, Kind::Email, &norm);
        out.push('@');
        let real_domain = norm
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| !d.is_empty());
        match (spec.keep_domain, real_domain, &spec.domain) {
            (true, Some(d), _) => out.push_str(d),
            (_, _, Some(d)) => out.push_str(d),
            _ => out.push_str(DEFAULT_EMAIL_DOMAIN),
        }
    }

    /// IP pseudonyms.
    ///
    /// `token` mode maps the keyed digest into reserved space, so the result
    /// is a valid address that can never be a real host:
    /// - IPv4 goes to 240.0.0.0/4 (reserved for future use): the low four bits
    ///   of the key version in the first octet, 24 bits of digest after it;
    /// - IPv6 goes to 2001:db8::/32 (documentation): 16 bits of key version,
    ///   then 80 bits of digest.
    ///
    /// IPv4 keeps only 24 bits, so two of 16 million addresses can share a
    /// token; counts of distinct addresses stay accurate to well under 0.1%
    /// below ten thousand addresses.
    ///
    /// `prefix-preserving` mode is ipcrypt-pfx: addresses in one subnet stay
    /// in one (encrypted) subnet. It is a permutation keyed per purpose and
    /// carries no version; rotate its key with the purpose's key.
    pub fn ip(&self, raw: &str, mode: IpMode) -> Option<IpAddr> {
        let ip = normalize::ip(raw)?;
        Some(match mode {
            IpMode::PrefixPreserving => self.pfx.encrypt_ipaddr(ip),
            IpMode::Token => {
                let mut buf = [0u8; IP_TEXT_MAX];
                let d = self.mac(Kind::Ip).digest(write_ip(&mut buf, ip));
                match ip {
                    IpAddr::V4(_) => {
                        let first = 0xF0 | (self.version as u8 & 0x0F);
                        let mut v4 = Ipv4Addr::new(first, d[0], d[1], d[2]);
                        if v4 == Ipv4Addr::BROADCAST {
                            v4 = Ipv4Addr::new(first, d[0], d[1], 0xFE);
                        }
                        IpAddr::V4(v4)
                    }
                    IpAddr::V6(_) => {
                        let v = self.version as u16;
                        let w = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
                        IpAddr::V6(Ipv6Addr::new(
                            0x2001,
                            0x0db8,
                            v,
                            w(0),
                            w(2),
                            w(4),
                            w(6),
                            w(8),
                        ))
                    }
                }
            }
        })
    }
}

/// Trims `text` of ASCII whitespace, collapses each inner run of it to one
/// space and passes every other byte through `map`, in place; the new
/// length. Bytes of multi-byte characters are never whitespace, so UTF-8
/// stays whole. Writing never overtakes reading: each space written stands
/// for at least one whitespace byte already read.
fn collapse_ascii_whitespace(text: &mut [u8], map: impl Fn(&u8) -> u8) -> usize {
    let mut len = 0;
    let mut space = false;
    for i in 0..text.len() {
        let b = text[i];
        // ASCII's `char::is_whitespace`.
        if matches!(b, b' ' | b'\t'..=b'\r') {
            space = len > 0;
            continue;
        }
        if space {
            text[len] = b' ';
            len += 1;
            space = false;
        }
        text[len] = map(&b);
        len += 1;
    }
    len
}

/// A 32-byte key for `label` derived from a root key (HKDF), for uses
/// outside pseudonyms (the objection register on a development key).
pub(crate) fn derive_key(root: &KeyMaterial, label: &str) -> zeroize::Zeroizing<[u8; 32]> {
    hmac::derive(root, &["derived", label])
}

/// The key version and payload of a reversible token.
pub fn parse_encrypted(token: &str) -> Option<(u32, &str)> {
    let rest = token.trim().strip_prefix('e')?;
    let (v, body) = rest.split_once('_')?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((v.parse().ok()?, body))
}

/// `ip.to_string()`, written directly: the formatting machinery costs as
/// much as the HMAC of the address.
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let mut buf = [0u8; IP_TEXT_MAX];
    String::from_utf8_lossy(write_ip(&mut buf, ip)).into_owned()
}

/// Appends `ip` as its `Display` writes it.
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    let mut buf = [0u8; IP_TEXT_MAX];
    out.push_str(std::str::from_utf8(write_ip(&mut buf, ip)).expect("an address is ASCII"));
}

/// The longest text of an address as `Display` writes it (an IPv4-mapped
/// IPv6 address, `::ffff:255.255.255.255`, is 22; eight full groups 39).
const IP_TEXT_MAX: usize = 45;

/// `ip` as its `Display` writes it, into `buf`.
fn write_ip(buf: &mut [u8; IP_TEXT_MAX], ip: IpAddr) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => ipv4_text(buf, v4),
        IpAddr::V6(v6) => ipv6_text(buf, v6),
    }
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it, into `buf` (15
/// bytes or more).
fn ipv4_text(buf: &mut [u8], ip: Ipv4Addr) -> &[u8] {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    &buf[..len]
}

/// RFC 5952 text, as `Ipv6Addr`'s `Display` writes it: lower-case groups
/// without leading zeros, the first longest run of two or more zero groups
/// as `::`, an IPv4-mapped address as `::ffff:a.b.c.d`.
fn ipv6_text(buf: &mut [u8; IP_TEXT_MAX], ip: Ipv6Addr) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Byte by byte: these are one to seven bytes, for which a call to
    // `memcpy` cost a sixth of an IPv6 field.
    fn put(buf: &mut [u8; IP_TEXT_MAX], len: &mut usize, bytes: &[u8]) {
        for &b in bytes {
            buf[*len] = b;
            *len += 1;
        }
    }
    let mut len = 0;
    if let Some(v4) = ip.to_ipv4_mapped() {
        put(buf, &mut len, b"::ffff:");
        let v4_len = ipv4_text(&mut buf[len..], v4).len();
        return &buf[..len + v4_len];
    }
    let groups = ip.segments();
    // The first longest run of zero groups; `::` only for two or more.
    let (mut run_at, mut run_len, mut at, mut cur) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if cur == 0 {
                at = i;
            }
            cur += 1;
            if cur > run_len {
                (run_at, run_len) = (at, cur);
            }
        } else {
            cur = 0;
        }
    }
    if run_len < 2 {
        run_len = 0;
        run_at = 8;
    }
    let mut i = 0;
    while i < 8 {
        if i == run_at {
            put(buf, &mut len, b"::");
            i += run_len;
            continue;
        }
        if i > 0 && i != run_at + run_len {
            put(buf, &mut len, b":");
        }
        let g = groups[i];
        let digits = [
            HEX[usize::from(g >> 12)],
            HEX[usize::from(g >> 8 & 15)],
            HEX[usize::from(g >> 4 & 15)],
            HEX[usize::from(g & 15)],
        ];
        let skip = (g.leading_zeros() / 4).min(3) as usize;
        put(buf, &mut len, &digits[skip..]);
        i += 1;
    }
    &buf[..len]
}

fn pfx_cipher(key: &KeyMaterial, purpose: &str, recipient: &str) -> IpcryptPfx {
    // ipcrypt-pfx panics if both halves of its key are equal; HKDF output
    // makes that a 2^-128 event, but a proxy must not panic on any key, so
    // derive again under a counter instead.
    for attempt in 0u8.. {
        let n = attempt.to_string();
        let k = hmac::derive(key, &["ipcrypt-pfx", purpose, recipient, &n]);
        if k[..16] != k[16..] {
            return IpcryptPfx::new(*k);
        }
    }
    unreachable!("256 HKDF outputs with equal halves")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(purpose: &str) -> Pseudonymiser {
        let k = KeyMaterial::new(2, vec![7u8; 32]).unwrap();
        Pseudonymiser::new(&k, purpose, "analytics")
    }

    #[test]
    fn domain_separated_by_purpose_and_kind() {
        let a = ps("a");
        let b = ps("b");
        assert_ne!(a.id("x"), b.id("x"));
        assert_ne!(a.token(Kind::Id, "x"), a.token(Kind::Name, "x"));
        assert_eq!(a.id("x"), ps("a").id("x"));
        assert!(a.id("x").starts_with("k2_"));
    }

    #[test]
    fn ip_tokens_are_reserved_and_carry_the_version() {
        let p = ps("a");
        let v4 = p.ip("192.0.2.7", IpMode::Token).unwrap();
        match v4 {
            IpAddr::V4(a) => assert_eq!(a.octets()[0], 0xF2),
            _ => panic!("family changed"),
        }
        let v6 = p.ip("2001:db8:1::7", IpMode::Token).unwrap();
        match v6 {
            IpAddr::V6(a) => assert_eq!(&a.segments()[..3], &[0x2001, 0x0db8, 2]),
            _ => panic!("family changed"),
        }
        assert_eq!(p.ip("::ffff:192.0.2.7", IpMode::Token), Some(v4));
        assert_eq!(p.ip("garbage", IpMode::Token), None);
    }

    #[test]
    fn reversible_tokens_round_trip_and_stay_bound() {
        let p = ps("a");
        let t = p.encrypt("user-email", "søren@example.dk").unwrap();
        assert!(t.starts_with("e2_"));
        assert!(!t.contains("søren"));
        assert_eq!(p.reveal("user-email", &t).unwrap(), "søren@example.dk");
        assert!(p.reveal("other-field", &t).is_err());
        assert!(ps("b").reveal("user-email", &t).is_err());
        assert_ne!(t, p.encrypt("user-email", "søren@example.dk").unwrap());
    }

    #[test]
    fn email_tokens_use_the_normalised_address() {
        let p = ps("a");
        for raw in [
            " Anna.Schmidt+Webinars@Example.COM ",
            "a@b.dk",
            "Søren@X.dk",
            "ØDEGÅRD.Æble@Ærø.DK",
            "×÷ßÞþÿ@Ý.dk",
            "ªÀ@x.dk",
            "ＡＢ@x.dk",
            "no-at-sign",
            "\u{a0}Z@Y.io\u{2003}",
        ] {
            for strip in [false, true] {
                let norm = normalize::email(raw, strip);
                let domain = norm.rsplit_once('@').map_or("", |(_, d)| d);
                let spec = EmailSpec {
                    keep_domain: true,
                    strip_plus_tag: strip,
                    ..Default::default()
                };
                let want = if domain.is_empty() {
                    format!("{}@{DEFAULT_EMAIL_DOMAIN}", p.token(Kind::Email, &norm))
                } else {
                    format!("{}@{domain}", p.token(Kind::Email, &norm))
                };
                assert_eq!(p.email(raw, &spec), want, "{raw:?}");
            }
        }
    }

    /// Names on the stack's fast path (ASCII and Latin-1 letters) get the
    /// token of `normalize::name`; other text takes the general path.
    #[test]
    fn fast_path_names_take_the_normalised_token() {
        let p = ps("a");
        const PIECES: &[&str] = &[
            "a", "Z", "q", " ", "  ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{1c}", "\u{1f}", "-",
            "'", "0", "\0", "\u{7f}", "É", "ø", "Ø", "ß", "ÿ", "×", "÷", "Þ", "\u{a0}", "\u{85}",
            "\u{3000}", "Ā", "ﬁ", "e\u{301}",
        ];
        let mut next = crate::testing::xorshift(0x2545_f491_4f6c_dd1d);
        for i in 0..20_000 {
            let raw = crate::testing::random_text(&mut next, PIECES, 0..12);
            let raw = if i % 500 == 0 { raw.repeat(30) } else { raw };
            let want = format!("L {}", p.token(Kind::Name, &normalize::name(&raw)));
            assert_eq!(p.name(&raw, Some("L")), want, "{raw:?}");
        }
    }

    #[test]
    fn ip_text_is_display() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.12.1",
            "100.9.99.109",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// Addresses with every pattern of zero groups, random groups and
    /// mapped IPv4 written as `Display` writes them.
    #[test]
    fn ipv6_text_is_display() {
        let mut next = crate::testing::xorshift(0x9e37_79b9_7f4a_7c15);
        for zeros in 0u32..256 {
            for _ in 0..40 {
                let mut g = [0u16; 8];
                for (i, x) in g.iter_mut().enumerate() {
                    if zeros & (1 << i) == 0 {
                        *x = match next() % 4 {
                            0 => (next() % 16) as u16,
                            1 => (next() % 256) as u16,
                            2 => (next() % 4096) as u16,
                            _ => next() as u16,
                        };
                    }
                }
                let ip = Ipv6Addr::from(g);
                let mut buf = [0u8; IP_TEXT_MAX];
                assert_eq!(ipv6_text(&mut buf, ip), ip.to_string().as_bytes(), "{g:?}");
            }
        }
        for ip in [
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "::ffff:0.0.0.0",
            "::",
            "::1",
            "1::",
        ] {
            let ip: Ipv6Addr = ip.parse().unwrap();
            let mut buf = [0u8; IP_TEXT_MAX];
            assert_eq!(ipv6_text(&mut buf, ip), ip.to_string().as_bytes(), "{ip}");
        }
    }

    #[test]
    fn prefix_preserving_keeps_subnets() {
        let p = ps("a");
        let a = p.ip("198.51.100.10", IpMode::PrefixPreserving).unwrap();
        let b = p.ip("198.51.100.200", IpMode::PrefixPreserving).unwrap();
        let (IpAddr::V4(a), IpAddr::V4(b)) = (a, b) else {
            panic!("family changed")
        };
        assert_eq!(a.octets()[..3], b.octets()[..3]);
        assert_ne!(a, Ipv4Addr::new(198, 51, 100, 10));
    }
}
