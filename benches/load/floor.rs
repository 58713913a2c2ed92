//! The load benchmark's floor: the least a reverse proxy built on scrim's
//! own stack does per request, to tell what scrim costs from what its stack
//! costs. `run.sh` runs it beside nginx and scrim as the peer "hyper floor".
//!
//!   cargo build --release --example load_floor
//!   load_floor LISTEN UPSTREAM      # e.g. 127.0.0.1:18086 127.0.0.1:18080
//!
//! It has what scrim's pass-through path cannot do without (hyper 1.x's
//! HTTP/1.1 server and client, tokio on one thread, kept upstream
//! connections, a `Content-Length` body read whole before it is forwarded,
//! as scrim does up to 64 KiB) and nothing else: no routes, no rules, no
//! hop-by-hop headers removed, no timeouts, no metrics, no logs, no limit
//! on connections, h2 or TLS. The sink's answers are a few bytes, so they
//! are read whole too, and the upstream connection goes back to the pool
//! before the client is answered. Not a proxy to use: a measuring stick.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Pool = Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream] = args.as_slice() else {
        eprintln!("usage: load_floor LISTEN UPSTREAM (each ADDRESS:PORT)");
        std::process::exit(2);
    };
    let (Ok(listen), Ok(upstream)) = (listen.parse::<SocketAddr>(), upstream.parse::<SocketAddr>())
    else {
        eprintln!("load_floor: LISTEN and UPSTREAM must be ADDRESS:PORT, as 127.0.0.1:18086");
        std::process::exit(2);
    };
    // One thread, as scrim runs when pinned to one core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    if let Err(e) = rt.block_on(serve(listen, upstream)) {
        eprintln!("load_floor: {e}");
        std::process::exit(1);
    }
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let pool: Pool = Arc::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let pool = pool.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| forward(req, pool.clone(), upstream));
            // A client that goes away mid-request is no concern of a floor.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn forward(
    req: Request<Incoming>,
    pool: Pool,
    upstream: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match exchange(req, &pool, upstream).await {
        Ok(resp) => resp,
        Err(e) => {
            eprintln!("load_floor: upstream: {e}");
            let mut resp = Response::new(Full::new(Bytes::from_static(b"bad gateway\n")));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            resp
        }
    })
}

async fn exchange(
    req: Request<Incoming>,
    pool: &Pool,
    upstream: SocketAddr,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let req = Request::from_parts(parts, Full::new(body));
    let kept = pool.lock().expect("the pool lock is never poisoned").pop();
    let mut sender = match kept {
        Some(s) if !s.is_closed() => s,
        _ => {
            let tcp = TcpStream::connect(upstream).await?;
            tcp.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    sender.ready().await?;
    let (parts, body) = sender.send_request(req).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    pool.lock()
        .expect("the pool lock is never poisoned")
        .push(sender);
    Ok(Response::from_parts(parts, Full::new(body)))
}
