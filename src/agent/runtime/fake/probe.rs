//! A running container's probe endpoint: HTTPS (or HTTP) on the port of the Pod's probes,
//! 200 once healthy, 500 before or when failing, 404 for a path no probe asks for.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::task::JoinSet;

use super::pods::Kubelet;
use crate::agent::health::Endpoint;
use crate::testkit::tls::{read_request_head, write_answer};

impl Kubelet {
    /// Listens on the probe endpoint; the returned set owns the listener and its connections
    /// (dropping it closes them all).
    pub(super) async fn serve(
        &self,
        endpoint: &Endpoint,
        paths: Vec<String>,
        failing: bool,
    ) -> Result<ContainerServer, (String, String)> {
        let ip: IpAddr = endpoint
            .host
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let addr = SocketAddr::new(ip, endpoint.port);
        // A killed container's port is free again at once (SO_REUSEADDR, set by tokio).
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| (addr.to_string(), e.to_string()))?;
        let healthy_at = (!failing).then(|| Instant::now() + self.opts.healthy_after);
        let tls = self.tls.clone();
        let https = endpoint.https;
        let alive = Arc::new(AtomicBool::new(true));
        let still = alive.clone();
        let mut set = JoinSet::new();
        set.spawn_local(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let _ = tcp.set_nodelay(true);
                let (tls, paths) = (tls.clone(), paths.clone());
                if !still.load(Ordering::SeqCst) {
                    return;
                }
                let still = still.clone();
                conns.spawn_local(async move {
                    let code = |path: &str| {
                        if !paths.iter().any(|p| p == path) {
                            404
                        } else if healthy_at.is_some_and(|at| Instant::now() >= at) {
                            200
                        } else {
                            500
                        }
                    };
                    if https {
                        if let Ok(mut s) = tls.accept(tcp).await {
                            answer(&mut s, code, &still).await;
                        }
                    } else {
                        let mut s = tcp;
                        answer(&mut s, code, &still).await;
                    }
                });
                // Reap finished connections.
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(ContainerServer { alive, _tasks: set })
    }
}

/// A container's endpoint. Dropping it closes the endpoint at once: the flag stops answers
/// synchronously, the aborted tasks then close the listener and the connections.
pub(super) struct ContainerServer {
    alive: Arc<AtomicBool>,
    _tasks: JoinSet<()>,
}

impl Drop for ContainerServer {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// Reads one request head and answers it with the status `code(path)`, unless the container
/// died meanwhile (then the connection is closed without an answer).
async fn answer<S>(s: &mut S, code: impl Fn(&str) -> u16, alive: &AtomicBool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(head) = read_request_head(s).await else {
        return;
    };
    let path = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    if !alive.load(Ordering::SeqCst) {
        return;
    }
    let code = code(path);
    let body = match code {
        200 => "ok",
        404 => "not found",
        _ => "fake kubelet: not healthy",
    };
    write_answer(s, code, body).await;
}
