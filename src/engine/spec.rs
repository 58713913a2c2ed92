//! The rule file as written: serde types for `rules/*.toml`.
//!
//! This is the "file" form. Nothing here is used on the hot path: `compile`
//! validates it into [`CompiledRules`](super::plan::CompiledRules). Every
//! struct denies unknown fields, and every action and kind is a closed enum,
//! because a fail-closed proxy must refuse a rule it does not understand
//! rather than skip it.
//!
//! ```toml
//! [purpose]
//! id = "audience-measurement"
//! legal_basis = "legitimate-interest"
//! retention = "13 months"
//! recipient = "analytics"
//!
//! [[rule]]
//! field = "**.email"
//! action = "pseudonymise"
//! kind = "email"
//! ```

use serde::Deserialize;
use toml::Spanned;

/// A whole rule file: one purpose and what its recipient may receive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub purpose: Spanned<PurposeSpec>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Spanned<RuleSpec>>,
}

/// The `[purpose]` table: the record of processing this file enforces.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeSpec {
    /// Stable identifier; part of the key derivation, so renaming it changes
    /// every pseudonym of the purpose.
    pub id: Spanned<String>,
    /// Free text for the privacy officer.
    pub description: Option<String>,
    /// GDPR art. 6(1) basis. Required; optional here only so that `check` can
    /// say what to write when it is missing.
    pub legal_basis: Option<Spanned<LegalBasis>>,
    /// How long the recipient may keep the data: `"13 months"`, `"6 months"`,
    /// `"1 year"`, `"30 days"`, or `"while-service-used"`.
    pub retention: Option<Spanned<String>>,
    /// Who receives the data, e.g. `"analytics"`, `"error-tracking"`. Also part
    /// of the key derivation: two recipients never share tokens.
    pub recipient: Spanned<String>,
    /// What happens to everything no rule names. `drop` unless written.
    #[serde(default)]
    pub default: Default,
    /// The consent signal; required when `legal_basis = "consent"`.
    pub consent: Option<Spanned<ConsentFile>>,
}

/// `[purpose.consent]`: where a request says whether the subject consented.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentFile {
    /// A request header, e.g. "x-consent-analytics".
    pub header: Option<String>,
    /// A cookie, e.g. "consent_analytics".
    pub cookie: Option<String>,
    /// A body selector, decided per event, e.g. "context.consent.analytics".
    pub field: Option<Spanned<String>>,
    /// Values meaning "granted" (case-insensitive); default "1", "true",
    /// "yes", "granted", "opt-in".
    pub granted: Option<Vec<String>>,
}

/// GDPR art. 6(1) legal bases.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LegalBasis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterest,
    PublicTask,
    LegitimateInterest,
}

/// The file-wide default for unnamed data.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Default {
    /// Allow-list: only what a rule names leaves.
    #[default]
    Drop,
    /// Keep everything except what a rule names. Must be written explicitly.
    Keep,
}

/// One `[[rule]]`: a selector, an action and the action's options.
///
/// Options are flat fields rather than a tagged enum so that `check` can name
/// an option given to the wrong action ("`keep_domain` applies only to
/// `kind = \"email\"`") instead of a generic serde message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Optional name used in diagnostics, logs and metrics.
    pub id: Option<String>,

    // Exactly one target.
    /// Body selector (JSON, NDJSON lines, form fields).
    pub field: Option<Spanned<String>>,
    /// Query-string selector.
    pub query: Option<Spanned<String>>,
    /// Header name (case-insensitive).
    pub header: Option<Spanned<String>>,
    /// Cookie name.
    pub cookie: Option<Spanned<String>>,

    pub action: Spanned<ActionName>,
    pub kind: Option<Spanned<Kind>>,

    // pseudonymise, kind = "email"
    /// Keep the real domain after the token (`<token>@example.com`).
    pub keep_domain: Option<bool>,
    /// Domain to use instead of the real one; default `pseudonym.invalid`.
    pub domain: Option<Spanned<String>>,
    /// Treat `a+tag@x` as `a@x` before hashing.
    pub strip_plus_tag: Option<bool>,
    // pseudonymise, kind = "name"
    /// Prefix for name tokens: `label = "Participant"` gives `Participant <token>`.
    pub label: Option<String>,
    // pseudonymise, any kind
    /// During the grace period after a key rotation, also emit the previous
    /// version's token beside the new one (`<field>_previous`), so a team
    /// allowed to can link its series across the rotation. Off by default.
    pub bridge: Option<bool>,
    // pseudonymise, kind = "ip"
    /// `token` (default): a keyed token inside a reserved range.
    /// `prefix-preserving`: ipcrypt-pfx, subnets stay subnets.
    pub ip_mode: Option<Spanned<IpMode>>,
    // generalise, kind = "ip"
    pub ipv4_prefix: Option<Spanned<u8>>,
    pub ipv6_prefix: Option<Spanned<u8>>,
    // generalise, kind = "timestamp"
    pub to: Option<Spanned<Granularity>>,
    // replace
    pub value: Option<toml::Value>,
    // decode
    pub encoding: Option<Spanned<Encoding>>,
    // pseudonymise kind = "url", and scrub
    /// URL query parameters kept verbatim.
    pub keep_params: Option<Vec<String>>,
    /// URL query parameters replaced by tokens.
    pub pseudonymise_params: Option<Vec<String>>,
    /// Keep the URL fragment (dropped by default).
    pub keep_fragment: Option<bool>,
}

/// What a rule does with the node it selects.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    Keep,
    Drop,
    #[serde(alias = "pseudonymize")]
    Pseudonymise,
    #[serde(alias = "generalize")]
    Generalise,
    Scrub,
    Replace,
    /// Parse a string as embedded JSON (optionally base64) and apply the
    /// rules inside it, re-encoding the same way.
    Decode,
    /// Reversible token: AES-256-GCM under the purpose's key; only the
    /// security role can reveal it (`scrim reveal`).
    Encrypt,
    /// Retired on purpose: an unkeyed hash is reversible by dictionary.
    Hash,
    /// Retired on purpose: masking keeps length and often most of the value.
    Mask,
}

/// The kind of a value: how it is normalised and what shape its output has.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Email,
    Name,
    Ip,
    Id,
    Phone,
    Url,
    Timestamp,
    UserAgent,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IpMode {
    Token,
    PrefixPreserving,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// A string holding JSON text.
    Json,
    /// Standard base64 of JSON (padding optional, kept as found).
    Base64Json,
    /// URL-safe base64 of JSON, as the Snowplow tracker sends `ue_px` and `cx`.
    Base64urlJson,
    /// JSON text or base64 of JSON, whichever the string holds, as Mixpanel
    /// clients send their `data` parameter: text starting with `{` or `[` is
    /// JSON; anything else is base64 (standard or URL-safe alphabet, padding
    /// optional). Re-encoded the way it came.
    JsonOrBase64,
}

impl std::str::FromStr for Kind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Email,
        Kind::Name,
        Kind::Ip,
        Kind::Id,
        Kind::Phone,
        Kind::Url,
        Kind::Timestamp,
        Kind::UserAgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Name => "name",
            Kind::Ip => "ip",
            Kind::Id => "id",
            Kind::Phone => "phone",
            Kind::Url => "url",
            Kind::Timestamp => "timestamp",
            Kind::UserAgent => "user-agent",
        }
    }
}

impl ActionName {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionName::Keep => "keep",
            ActionName::Drop => "drop",
            ActionName::Pseudonymise => "pseudonymise",
            ActionName::Generalise => "generalise",
            ActionName::Scrub => "scrub",
            ActionName::Replace => "replace",
            ActionName::Decode => "decode",
            ActionName::Encrypt => "encrypt",
            ActionName::Hash => "hash",
            ActionName::Mask => "mask",
        }
    }
}

impl LegalBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegalObligation => "legal-obligation",
            LegalBasis::VitalInterest => "vital-interest",
            LegalBasis::PublicTask => "public-task",
            LegalBasis::LegitimateInterest => "legitimate-interest",
        }
    }

    /// The GDPR article the basis comes from, for records of processing.
    pub fn article(self) -> &'static str {
        match self {
            LegalBasis::Consent => "art. 6(1)(a)",
            LegalBasis::Contract => "art. 6(1)(b)",
            LegalBasis::LegalObligation => "art. 6(1)(c)",
            LegalBasis::VitalInterest => "art. 6(1)(d)",
            LegalBasis::PublicTask => "art. 6(1)(e)",
            LegalBasis::LegitimateInterest => "art. 6(1)(f)",
        }
    }
}
