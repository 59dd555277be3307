//! One small HTTP server for every long-running role: `/healthz` (the process serves),
//! `/readyz` (the role says it is ready, with a one-line detail) and `/metrics`
//! (prometheus-client, OpenMetrics text, metric names prefixed `kubeplane_`).
//!
//! A role builds a [`Registry`] with [`registry`], registers its own metrics in it, keeps a
//! [`Health`] handle to report readiness, then runs [`serve`] on a listener from [`bind`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), kubeplane::telemetry::TelemetryError> {
//! use kubeplane::telemetry::{self, Health};
//! let mut registry = telemetry::registry();
//! // MyMetrics::register(&mut registry);
//! let health = Health::new();
//! let listener = telemetry::bind("127.0.0.1:8081").await?;
//! tokio::spawn(telemetry::serve(listener, registry, health.clone()));
//! health.set_ready("watching node cp-1");
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "kubeplane";

/// Content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the telemetry server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The address does not parse.
    #[error("metrics address {addr:?} is not HOST:PORT (for example 0.0.0.0:8080): {reason}")]
    Address {
        /// The address given.
        addr: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; pick another --metrics-addr")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("telemetry server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// A registry whose metric names get the `kubeplane_` prefix.
pub fn registry() -> Registry {
    Registry::with_prefix(METRIC_PREFIX)
}

/// Liveness and readiness of a role, shared between the role and the server. Cloning shares
/// the state.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Debug)]
struct HealthInner {
    live: AtomicBool,
    ready: AtomicBool,
    detail: Mutex<String>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Live, not ready yet (detail `starting`).
    pub fn new() -> Self {
        Health {
            inner: Arc::new(HealthInner {
                live: AtomicBool::new(true),
                ready: AtomicBool::new(false),
                detail: Mutex::new("starting".into()),
            }),
        }
    }

    fn set(&self, ready: bool, detail: String) {
        // A poisoned lock only means a panic elsewhere while holding it; the String is intact.
        let mut d = self.inner.detail.lock().unwrap_or_else(|e| e.into_inner());
        *d = detail;
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Marks the role ready; `detail` is what `/readyz` answers.
    pub fn set_ready(&self, detail: impl Into<String>) {
        self.set(true, detail.into());
    }

    /// Marks the role not ready; `detail` says why.
    pub fn set_not_ready(&self, detail: impl Into<String>) {
        self.set(false, detail.into());
    }

    /// Marks the process dead (`/healthz` fails) or alive again.
    pub fn set_live(&self, live: bool) {
        self.inner.live.store(live, Ordering::SeqCst);
    }

    /// Whether the role is ready, and the detail.
    pub fn readiness(&self) -> (bool, String) {
        let d = self
            .inner
            .detail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (self.inner.ready.load(Ordering::SeqCst), d)
    }

    /// Whether the process is live.
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct ServerState {
    registry: Arc<Registry>,
    health: Health,
}

/// The routes `/healthz`, `/readyz` and `/metrics`. A role may merge routes of its own.
pub fn router(registry: Registry, health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ServerState {
            registry: Arc::new(registry),
            health,
        })
}

async fn healthz(State(s): State<ServerState>) -> Response {
    if s.health.is_live() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not live\n").into_response()
    }
}

async fn readyz(State(s): State<ServerState>) -> Response {
    let (ready, detail) = s.health.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{detail}\n")).into_response()
}

async fn metrics(State(s): State<ServerState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Parses `HOST:PORT` and binds it, so a bad address fails at start-up with a clear message.
pub async fn bind(addr: &str) -> Result<TcpListener, TelemetryError> {
    let parsed: SocketAddr =
        addr.parse()
            .map_err(|e: std::net::AddrParseError| TelemetryError::Address {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
    TcpListener::bind(parsed)
        .await
        .map_err(|source| TelemetryError::Bind {
            addr: parsed,
            source,
        })
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Health,
) -> Result<(), TelemetryError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, router(registry, health))
        .await
        .map_err(TelemetryError::Serve)
}

#[cfg(test)]
mod tests;
