//! The audit log: one JSON line per admin action, appended and flushed
//! before the response leaves: time, role, token id, action, target,
//! outcome. Targets are pseudonymised (a subject appears as a keyed token,
//! never as the email or id that was looked up); nothing secret is written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::auth::Caller;
use crate::config::file::Role;

#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    pub time: String,
    pub role: Option<Role>,
    pub token_id: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
}

pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => {
                let mut o = OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    o.mode(0o600);
                }
                Some(Mutex::new(o.open(p)?))
            }
            None => None,
        };
        Ok(Self { file })
    }

    pub fn record(
        &self,
        caller: Option<&Caller>,
        action: &str,
        target: Option<&str>,
        outcome: &str,
    ) {
        let entry = Entry {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            role: caller.map(|c| c.role),
            token_id: caller.map(|c| c.token_id.as_str()),
            action,
            target,
            outcome,
        };
        let mut line = serde_json::to_vec(&entry).expect("an audit entry serialises");
        line.push(b'\n');
        tracing::info!(
            action,
            outcome,
            token = caller.map(|c| c.token_id.as_str()),
            "admin"
        );
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                if f.write_all(&line).and_then(|()| f.sync_data()).is_err() {
                    tracing::error!("the audit log could not be written");
                }
            }
        }
    }
}
