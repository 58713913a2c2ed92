//! The admin endpoints. Request bodies are small JSON documents; errors are
//! the proxy's `{"error", "reason"}` bodies and never echo the request.

use std::str::FromStr;

use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;

use super::auth::{self, Caller, Denied};
use super::Admin;
use crate::config::file::Role;
use crate::engine::spec::Kind;
use crate::proxy::respond::error_response;
use crate::proxy::BoxBody;

const MAX_BODY: u64 = 64 << 10;

pub async fn handle(admin: &Admin, req: Request<Incoming>) -> Response<BoxBody> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();

    // Probes need no token: load balancers and kubelets call them.
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => {
            return json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, "/readyz") => return ready(admin),
        // Counts only, no personal data: scraped like the probes, without
        // a token (the listener is loopback unless configured otherwise).
        (&Method::GET, "/metrics") => return metrics(admin),
        _ => {}
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (action, roles): (&str, &[Role]) = match (&method, segments.as_slice()) {
        (&Method::GET, ["keys"]) => ("keys.list", &[Role::Security, Role::Operator]),
        (&Method::POST, ["keys", "rotate"]) => ("keys.rotate", &[Role::Security]),
        (&Method::POST, ["keys", _, "retire"]) => ("keys.retire", &[Role::Security]),
        (&Method::POST, ["reveal"]) => ("reveal", &[Role::Security]),
        (&Method::POST, ["lookup"]) => ("lookup", &[Role::Security, Role::PrivacyOfficer]),
        (&Method::POST, ["reload"]) => ("reload", &[Role::Security, Role::Operator]),
        (&Method::POST, ["objections"]) => {
            ("objections.add", &[Role::Security, Role::PrivacyOfficer])
        }
        (&Method::DELETE, ["objections"]) => {
            ("objections.remove", &[Role::Security, Role::PrivacyOfficer])
        }
        (&Method::GET, ["shadow"]) => (
            "shadow",
            &[Role::Security, Role::Operator, Role::PrivacyOfficer],
        ),
        (&Method::GET, ["privacy"]) => (
            "privacy.stats",
            &[Role::Security, Role::Operator, Role::PrivacyOfficer],
        ),
        (&Method::GET, ["unknown-fields"]) => (
            "unknown-fields",
            &[Role::Security, Role::Operator, Role::PrivacyOfficer],
        ),
        _ => return error_response(StatusCode::NOT_FOUND, "no such admin endpoint"),
    };

    let authz = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // The tokens of the config in force: a reload adds or revokes tokens
    // without a restart.
    let config = admin.runtime.config();
    let tokens = config.admin.as_ref().map_or(&[][..], |a| &a.tokens[..]);
    let caller = match auth::authenticate(tokens, authz) {
        Ok(c) => c,
        Err(_) => {
            admin.audit.record(None, action, None, "unauthenticated");
            return error_response(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        }
    };
    if let Err(Denied::Forbidden) = auth::authorize(&caller, roles) {
        admin.audit.record(Some(&caller), action, None, "forbidden");
        return error_response(StatusCode::FORBIDDEN, "this token may not do that");
    }

    let body = match read_body(req).await {
        Ok(b) => b,
        Err(res) => {
            admin
                .audit
                .record(Some(&caller), action, None, "bad_request");
            return res;
        }
    };
    match action {
        "keys.list" => keys_list(admin, &caller),
        "keys.rotate" => rotate(admin, &caller),
        "keys.retire" => retire(admin, &caller, segments[1]),
        "reveal" => reveal(admin, &caller, &body),
        "lookup" => lookup(admin, &caller, &body),
        "objections.add" => object(admin, &caller, &body, true),
        "objections.remove" => object(admin, &caller, &body, false),
        "privacy.stats" => privacy_stats(admin, &caller),
        "shadow" => {
            admin.audit.record(Some(&caller), "shadow", None, "ok");
            let routes: Vec<_> = admin
                .runtime
                .shadow
                .snapshot()
                .into_iter()
                .map(|(route, r)| serde_json::json!({"route": route, "report": r}))
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "routes": routes }))
        }
        "unknown-fields" => unknown_fields(admin, &caller),
        _ => reload(admin, &caller),
    }
}

fn metrics(admin: &Admin) -> Response<BoxBody> {
    let mut res = Response::new(crate::proxy::body::boxed(http_body_util::Full::new(
        bytes::Bytes::from(admin.runtime.metrics.render()),
    )));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

fn ready(admin: &Admin) -> Response<BoxBody> {
    if admin.runtime.is_draining() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let snap = admin.runtime.snapshot();
    let version = snap.routes.first().map(|r| r.engine.key_version());
    if snap.routes.is_empty() {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "no routes loaded");
    }
    json(
        StatusCode::OK,
        &serde_json::json!({"status": "ready", "routes": snap.routes.len(), "key_version": version}),
    )
}

fn keys_list(admin: &Admin, caller: &Caller) -> Response<BoxBody> {
    let Some(ring) = admin.runtime.ring() else {
        admin
            .audit
            .record(Some(caller), "keys.list", None, "no_ring");
        return error_response(
            StatusCode::CONFLICT,
            "scrim runs on a development key, not a key ring",
        );
    };
    let versions: Vec<_> = ring
        .versions()
        .iter()
        .map(|v| {
            serde_json::json!({
                "id": v.id,
                "created": v.created,
                "state": v.state,
                "retired": v.retired,
            })
        })
        .collect();
    admin.audit.record(Some(caller), "keys.list", None, "ok");
    json(StatusCode::OK, &serde_json::json!({ "versions": versions }))
}

fn rotate(admin: &Admin, caller: &Caller) -> Response<BoxBody> {
    match admin.runtime.rotate() {
        Ok(v) => {
            admin.audit.record(
                Some(caller),
                "keys.rotate",
                Some(&format!("version {v}")),
                "ok",
            );
            json(StatusCode::OK, &serde_json::json!({"active": v}))
        }
        Err(e) => {
            admin
                .audit
                .record(Some(caller), "keys.rotate", None, "failed");
            ring_error(&e)
        }
    }
}

fn retire(admin: &Admin, caller: &Caller, id: &str) -> Response<BoxBody> {
    let Ok(id) = id.parse::<u32>() else {
        admin
            .audit
            .record(Some(caller), "keys.retire", None, "bad_request");
        return error_response(StatusCode::BAD_REQUEST, "the version must be a number");
    };
    let target = format!("version {id}");
    match admin.runtime.retire(id) {
        Ok(()) => {
            admin
                .audit
                .record(Some(caller), "keys.retire", Some(&target), "ok");
            json(StatusCode::OK, &serde_json::json!({"retired": id}))
        }
        Err(e) => {
            admin
                .audit
                .record(Some(caller), "keys.retire", Some(&target), "failed");
            ring_error(&e)
        }
    }
}

/// A key operation that failed: 500 when the ring file could not be read or
/// written (a full or read-only disk; the ring was not changed), else 409.
fn ring_error(e: &crate::snapshot::RuntimeError) -> Response<BoxBody> {
    use crate::keyring::KeyRingError;
    match e {
        crate::snapshot::RuntimeError::Ring(KeyRingError::Io { source, .. }) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the key ring could not be updated ({source}); it was not changed"),
        ),
        _ => error_response(StatusCode::CONFLICT, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealReq {
    purpose: String,
    field: String,
    token: String,
}

fn reveal(admin: &Admin, caller: &Caller, body: &[u8]) -> Response<BoxBody> {
    let Ok(r) = serde_json::from_slice::<RevealReq>(body) else {
        admin
            .audit
            .record(Some(caller), "reveal", None, "bad_request");
        return error_response(
            StatusCode::BAD_REQUEST,
            "expected {\"purpose\", \"field\", \"token\"}",
        );
    };
    // The token is itself a pseudonym: safe to name in the audit log.
    let target = format!("{}/{} {}", r.purpose, r.field, r.token);
    match admin.runtime.reveal(&r.purpose, &r.field, &r.token) {
        Ok(value) => {
            admin
                .audit
                .record(Some(caller), "reveal", Some(&target), "ok");
            json(StatusCode::OK, &serde_json::json!({ "value": value }))
        }
        Err(e) => {
            admin
                .audit
                .record(Some(caller), "reveal", Some(&target), "failed");
            error_response(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupReq {
    kind: String,
    value: String,
}

fn lookup(admin: &Admin, caller: &Caller, body: &[u8]) -> Response<BoxBody> {
    let Ok(r) = serde_json::from_slice::<LookupReq>(body) else {
        admin
            .audit
            .record(Some(caller), "lookup", None, "bad_request");
        return error_response(StatusCode::BAD_REQUEST, "expected {\"kind\", \"value\"}");
    };
    let kind = match Kind::from_str(&r.kind) {
        Ok(k @ (Kind::Email | Kind::Name | Kind::Id | Kind::Phone | Kind::Ip)) => k,
        _ => {
            admin
                .audit
                .record(Some(caller), "lookup", None, "bad_request");
            return error_response(
                StatusCode::BAD_REQUEST,
                "kind must be email, name, id, phone or ip",
            );
        }
    };
    let target = format!(
        "{} {}",
        kind.as_str(),
        admin.runtime.audit_pseudonym(&r.value)
    );
    let rows = admin.runtime.lookup(kind, &r.value);
    admin
        .audit
        .record(Some(caller), "lookup", Some(&target), "ok");
    json(StatusCode::OK, &serde_json::json!({ "pseudonyms": rows }))
}

/// Per route, the names (never the values) of what arrived and was dropped
/// because no rule named it, with counts.
fn unknown_fields(admin: &Admin, caller: &Caller) -> Response<BoxBody> {
    let routes = admin.runtime.unknown_fields();
    admin
        .audit
        .record(Some(caller), "unknown-fields", None, "ok");
    json(StatusCode::OK, &serde_json::json!({ "routes": routes }))
}

/// Adds or removes a subject from the objection register. The audit line
/// names the subject by its audit pseudonym only.
fn object(admin: &Admin, caller: &Caller, body: &[u8], add: bool) -> Response<BoxBody> {
    let action = if add {
        "objections.add"
    } else {
        "objections.remove"
    };
    let Ok(r) = serde_json::from_slice::<LookupReq>(body) else {
        admin
            .audit
            .record(Some(caller), action, None, "bad_request");
        return error_response(StatusCode::BAD_REQUEST, "expected {\"kind\", \"value\"}");
    };
    let kind = match Kind::from_str(&r.kind) {
        Ok(k) if crate::privacy::objections::supported(k) => k,
        _ => {
            admin
                .audit
                .record(Some(caller), action, None, "bad_request");
            return error_response(StatusCode::BAD_REQUEST, "kind must be email or id");
        }
    };
    let target = format!(
        "{} {}",
        kind.as_str(),
        admin.runtime.audit_pseudonym(&r.value)
    );
    match admin.runtime.object(kind, &r.value, add) {
        Ok(changed) => {
            admin
                .audit
                .record(Some(caller), action, Some(&target), "ok");
            json(
                StatusCode::OK,
                &serde_json::json!({"changed": changed, "subjects": admin.runtime.objections().len()}),
            )
        }
        Err(e) => {
            admin
                .audit
                .record(Some(caller), action, Some(&target), "failed");
            error_response(StatusCode::CONFLICT, &e.to_string())
        }
    }
}

fn privacy_stats(admin: &Admin, caller: &Caller) -> Response<BoxBody> {
    admin
        .audit
        .record(Some(caller), "privacy.stats", None, "ok");
    let mut v = admin.runtime.metrics.privacy_json();
    v["objection_subjects"] = serde_json::json!(admin.runtime.objections().len());
    json(StatusCode::OK, &v)
}

fn reload(admin: &Admin, caller: &Caller) -> Response<BoxBody> {
    match admin.runtime.reload() {
        Ok(()) => {
            admin.audit.record(Some(caller), "reload", None, "ok");
            json(StatusCode::OK, &serde_json::json!({"status": "reloaded"}))
        }
        Err(e) => {
            admin.audit.record(Some(caller), "reload", None, "failed");
            error_response(StatusCode::CONFLICT, &e.to_string())
        }
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Vec<u8>, Response<BoxBody>> {
    let mut body = req.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| error_response(StatusCode::BAD_REQUEST, "the body could not be read"))?;
        if let Ok(d) = frame.into_data() {
            if buf.len() as u64 + d.len() as u64 > MAX_BODY {
                return Err(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "admin requests are small",
                ));
            }
            buf.extend_from_slice(&d);
        }
    }
    Ok(buf)
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<BoxBody> {
    crate::proxy::respond::json_response(status, v)
}
