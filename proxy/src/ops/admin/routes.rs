//! What each admin path answers, and the readiness check behind `/readyz`.

use std::future::Future;
use std::pin::Pin;

use super::http::{RequestLine, Response, Status};
use super::Limits;
use crate::ops::metrics::{self, Metrics};

/// Whether the proxy can serve traffic: rules and keys loaded, upstream reachable.
///
/// `/readyz` answers 503 with the `Err` text as its body, so the text must name the cause
/// without secrets (no keys, passwords or connection strings with credentials).
pub trait Readiness: Send + Sync {
    /// Checks readiness now; should finish well within [`Limits::readiness_timeout`].
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;

    /// Something an operator should know while the proxy stays ready (a failed reload whose
    /// previous rules and keys still serve); `/readyz` adds it below "ready".
    fn detail(&self) -> Option<String> {
        None
    }
}

pub(super) async fn route(
    request: &RequestLine<'_>,
    metrics: &Metrics,
    readiness: &dyn Readiness,
    limits: &Limits,
) -> Response {
    if request.method != "GET" {
        return Response::text(Status::MethodNotAllowed, "method not allowed\n");
    }
    match request.path {
        "/metrics" => Response {
            status: Status::Ok,
            content_type: metrics::CONTENT_TYPE,
            body: metrics.encode(),
        },
        "/healthz" => Response::text(Status::Ok, "ok"),
        "/readyz" => {
            match tokio::time::timeout(limits.readiness_timeout, readiness.check()).await {
                Ok(Ok(())) => match readiness.detail() {
                    None => Response::text(Status::Ok, "ready"),
                    Some(detail) => Response::text(Status::Ok, format!("ready\n{detail}")),
                },
                Ok(Err(reason)) => Response::text(Status::Unavailable, reason),
                Err(_elapsed) => Response::text(Status::Unavailable, "readiness check timed out"),
            }
        }
        _ => Response::text(Status::NotFound, "not found\n"),
    }
}
