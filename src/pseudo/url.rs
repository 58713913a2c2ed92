//! URLs keep their shape: scheme, host and path stay; userinfo goes; query
//! parameters are kept, tokenised or dropped by name; the fragment goes
//! unless a rule keeps it.

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

impl Pseudonymiser {
    /// Rewrites a URL. `None` if it does not parse.
    pub fn url(&self, raw: &str, spec: &UrlSpec) -> Option<String> {
        let trimmed = raw.trim();
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
                    } else if spec.keep_unnamed_params
                        || spec.keep_params.iter().any(|p| p.as_str() == k)
                    {
                        Some((k.into_owned(), v.into_owned()))
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
