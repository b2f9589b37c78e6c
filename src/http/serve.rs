//! The public listener's connection loop, and the deadline on request bodies: what cuts
//! slow clients (slow-loris) off.
//!
//! `axum::serve` gives hyper no timer, and without one hyper's header read timeout (30 s by
//! default) is off: a client that sends its request head a byte at a time, or nothing at all,
//! held a connection and a task for as long as it liked. So the server runs its own loop
//! (the same as `axum::serve`'s, HTTP/1 only, as the server always was) with a timer and a
//! head deadline; and [`body_deadline`] gives every request body a deadline of its own, since
//! hyper has none for bodies. Both are counted in `aia_refused_total`, with oversized heads
//! and bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::ApiError;
use crate::app::AppState;

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets each
/// connection finish the request it is on, and returns when all have (like `axum::serve`'s
/// graceful shutdown; upgraded WebSockets are no longer the loop's by then). A connection
/// whose next request head is not complete within `head_timeout` (from its opening, or from
/// its previous answer) is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let conns = TaskTracker::new();
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let (router, stop) = (router.clone(), stop.clone());
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(req.map(Body::new))
            });
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(head_timeout);
            let conn = builder.serve_connection(TokioIo::new(tcp), service).with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            match result {
                Err(e) if e.is_timeout() => crate::metrics::refused("head_timeout"),
                Err(e) if e.is_parse_too_large() => crate::metrics::refused("head_too_large"),
                _ => {}
            }
        });
    }
    drop(listener);
    stop.cancel();
    conns.close();
    conns.wait().await;
}

/// As `axum::serve` does: errors of one connection are skipped; others (out of file
/// descriptors) pause accepting for a moment instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Gives a request's body `body_timeout` from the end of its head to arrive in full; a body
/// still arriving then ends in an error, and the request is answered 408 `request_timeout`
/// and the connection closed. Also counts bodies refused as too large (413, on any route).
pub async fn body_deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let limit = state.settings.body_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let late = Arc::new(AtomicBool::new(false));
    let flag = late.clone();
    let req = req.map(move |body| {
        let chunks = body.into_data_stream();
        Body::from_stream(futures_util::stream::unfold(Some(chunks), move |chunks| {
            let flag = flag.clone();
            async move {
                let mut chunks = chunks?;
                match tokio::time::timeout_at(deadline, chunks.next()).await {
                    Ok(Some(chunk)) => Some((chunk, Some(chunks))),
                    Ok(None) => None,
                    Err(_) => {
                        flag.store(true, Ordering::Relaxed);
                        let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow");
                        Some((Err(axum::Error::new(e)), None))
                    }
                }
            }
        }))
    });
    let response = next.run(req).await;
    if late.load(Ordering::Relaxed) {
        crate::metrics::refused("body_timeout");
        let message = format!("The request body did not arrive within {} s.", limit.as_secs());
        let mut response = ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message).into_response();
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        crate::metrics::refused("body_too_large");
    }
    response
}
