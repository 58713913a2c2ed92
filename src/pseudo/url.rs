//! URLs keep their shape: scheme, host and path stay (a path segment holding
//! an email becomes an email token); userinfo goes; query parameters are
//! kept, tokenised or dropped by name; the fragment goes unless a rule keeps
//! it.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

use super::Pseudonymiser;
use crate::engine::plan::UrlSpec;

/// Query parameters that carry personal data in the wild, tokenised when a
/// rule names none of its own.
pub const PERSONAL_PARAMS: &[&str] = &[
    "email",
    "e-mail",
    "mail",
    "name",
    "first_name",
    "firstname",
    "last_name",
    "lastname",
    "fname",
    "lname",
    "full_name",
    "fullname",
    "user",
    "username",
    "user_id",
    "userid",
    "uid",
    "phone",
    "tel",
    "mobile",
    "ip",
];

/// Base used to parse relative URLs (`/page?email=...`); stripped again.
const RELATIVE_BASE: &str = "http://relative.invalid";

/// Values analytics SDKs put where a URL would be (PostHog's and Mixpanel's
/// `$referrer` when there was none): passed as they are, not read as a path.
const SENTINELS: &[&str] = &["$direct"];

impl Pseudonymiser {
    /// Rewrites a URL. `None` if it does not parse.
    pub fn url(&self, raw: &str, spec: &UrlSpec) -> Option<String> {
        let trimmed = raw.trim();
        if SENTINELS.contains(&trimmed) {
            return Some(trimmed.to_owned());
        }
        let (mut url, relative) = match Url::parse(trimmed) {
            Ok(u) => (u, false),
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                (Url::parse(RELATIVE_BASE).ok()?.join(trimmed).ok()?, true)
            }
            Err(_) => return None,
        };
        // Userinfo is credentials or an account name: never forwarded.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        // The path stays, but an email in it (`/users/jose@example.es`) is
        // as personal as one in a parameter: it becomes the email token.
        if let Some(path) = self.path_without_emails(url.path()) {
            url.set_path(&path);
        }
        if url.query().is_some() {
            let personal: Vec<&str> = if spec.pseudonymise_params.is_empty() {
                PERSONAL_PARAMS.to_vec()
            } else {
                spec.pseudonymise_params
                    .iter()
                    .map(String::as_str)
                    .collect()
            };
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .filter_map(|(k, v)| {
                    if personal.iter().any(|p| p.eq_ignore_ascii_case(&k)) {
                        Some((k.into_owned(), self.param_token(&v)))
                    } else if spec.keep_params.iter().any(|p| p.as_str() == k) {
                        Some((k.into_owned(), v.into_owned()))
                    } else if spec.keep_unnamed_params {
                        // Free text keeps parameters it does not know, but
                        // not an email that one of them carries.
                        let v = if contains_email(&v) {
                            self.param_token(&v)
                        } else {
                            v.into_owned()
                        };
                        Some((k.into_owned(), v))
                    } else {
                        None
                    }
                })
                .collect();
            if pairs.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
        }
        if !spec.keep_fragment {
            url.set_fragment(None);
        }
        if relative {
            let s = url.as_str();
            // A scheme-relative input (`//host/path`, or `\\host` which the
            // URL parser reads the same way) brings its own host: only the
            // scheme came from the base, so only the scheme is removed.
            match s.strip_prefix(RELATIVE_BASE) {
                Some(path) if url.host_str() == Some("relative.invalid") => Some(path.to_owned()),
                _ => Some(s.strip_prefix("http:").unwrap_or(s).to_owned()),
            }
        } else {
            Some(url.into())
        }
    }

    /// The path with every segment that holds an email replaced by the
    /// segment's email token; `None` when no segment holds one.
    fn path_without_emails(&self, path: &str) -> Option<String> {
        if !path.contains('@') && !path.contains("%40") {
            return None;
        }
        let mut changed = false;
        let segments: Vec<Cow<'_, str>> = path
            .split('/')
            .map(|seg| {
                let decoded = percent_decode_str(seg).decode_utf8_lossy();
                if contains_email(&decoded) {
                    changed = true;
                    Cow::Owned(self.email(&decoded, &Default::default()))
                } else {
                    Cow::Borrowed(seg)
                }
            })
            .collect();
        changed.then(|| segments.join("/"))
    }

    /// A parameter value that looks like an email keeps the email shape (and
    /// the email token, so it joins with email fields); anything else
    /// becomes an id token.
    fn param_token(&self, v: &str) -> String {
        if v.contains('@') {
            self.email(v, &Default::default())
        } else {
            self.id(v)
        }
    }
}

/// Does `s` contain `local@domain.tld` anywhere: a non-empty local part and
/// a dotted domain name around one of its `@`?
fn contains_email(s: &str) -> bool {
    let local_char = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || c == '.' || c == '-';
    s.match_indices('@').any(|(at, _)| {
        let local_ok = s[..at].chars().next_back().is_some_and(local_char);
        let domain: String = s[at + 1..]
            .chars()
            .take_while(|&c| domain_char(c))
            .collect();
        let labels: Vec<&str> = domain.trim_end_matches(['.', '-']).split('.').collect();
        local_ok && labels.len() >= 2 && labels.iter().all(|l| !l.is_empty())
    })
}
