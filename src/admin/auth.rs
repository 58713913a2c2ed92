//! Bearer tokens per role, stored as SHA-256 hashes and compared in
//! constant time against every configured token (so timing does not reveal
//! which token came close). A missing or unknown token is 401; a known token
//! whose role lacks the right is 403. Neither says which part was wrong.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::file::Role;
use crate::config::AdminToken;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or not one we know.
    Unauthenticated,
    /// 403: a known token without the right.
    Forbidden,
}

/// Who sent `authorization` (the header value), if anyone we know.
pub fn authenticate(tokens: &[AdminToken], authorization: Option<&str>) -> Result<Caller, Denied> {
    let presented = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Denied::Unauthenticated)?;
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<&AdminToken> = None;
    for t in tokens {
        if bool::from(t.sha256.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    found
        .map(|t| Caller {
            token_id: t.id.clone(),
            role: t.role,
        })
        .ok_or(Denied::Unauthenticated)
}

/// Does `caller` hold one of `roles`?
pub fn authorize(caller: &Caller, roles: &[Role]) -> Result<(), Denied> {
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<AdminToken> {
        vec![AdminToken {
            id: "sec".into(),
            role: Role::Security,
            sha256: Sha256::digest(b"s3cret").into(),
        }]
    }

    #[test]
    fn bearer_tokens() {
        let t = tokens();
        assert_eq!(authenticate(&t, None), Err(Denied::Unauthenticated));
        assert_eq!(
            authenticate(&t, Some("Bearer nope")),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            authenticate(&t, Some("Basic s3cret")),
            Err(Denied::Unauthenticated)
        );
        let c = authenticate(&t, Some("Bearer s3cret")).unwrap();
        assert_eq!(c.role, Role::Security);
        assert_eq!(authorize(&c, &[Role::Operator]), Err(Denied::Forbidden));
        assert_eq!(authorize(&c, &[Role::Security]), Ok(()));
    }
}
