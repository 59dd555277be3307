//! Taking this node's kube-apiserver out of the load balancer before the agent restarts it:
//! an haproxy agent-check responder.
//!
//! kubelet stops the old kube-apiserver as soon as its manifest changes. Between that moment
//! and the load balancer's health check marking the server down (haproxy: `fall` × `inter`,
//! 6 s with the seeds' `inter 2s fall 3`), new connections through the VIP still reach the
//! terminating server, which answers `/readyz` with 500 and then refuses them. With
//! `--lb-agent-check-addr`, the agent answers haproxy's agent check (a TCP connection; the
//! agent writes one line and closes: haproxy `configuration.txt`, "agent-check") with
//! `ready`, and with `drain` from just before it writes a kube-apiserver manifest until the
//! new kube-apiserver is confirmed healthy (or last-known-good is restored). A drained server
//! gets no new connections; the agent writes only after a load balancer has heard `drain`
//! and `--lb-drain-seconds` have passed (for other load balancers polling on their own
//! schedule, and for requests already accepted to finish). If no load balancer asks within
//! the first-check window, the restart goes ahead (logged): a misconfigured load balancer
//! never blocks a rollout. haproxy ignores an agent that cannot be reached ("Failure to
//! connect to the agent is not considered an error"), so a stopped agent leaves the server
//! to the regular health check.
//!
//! The haproxy side (per server line): `agent-check agent-port 6445 agent-inter 1s`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Default of `--lb-drain-seconds`: twice haproxy's default `agent-inter` (2 s).
pub const DEFAULT_DRAIN_SECONDS: u64 = 4;

/// How long, beyond the drain seconds, a drain waits for the first load balancer check before
/// restarting anyway.
const FIRST_CHECK_GRACE: Duration = Duration::from_secs(5);

/// What a load balancer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `ready`: in the pool (the regular health check still decides up or down).
    Ready,
    /// `drain`: no new connections.
    Drain,
}

impl Answer {
    /// The agent-check line.
    pub fn line(self) -> &'static [u8] {
        match self {
            Answer::Ready => b"ready\n",
            Answer::Drain => b"drain\n",
        }
    }
}

/// How a drain went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// A load balancer heard `drain`, then the drain seconds passed.
    Heard,
    /// The node was drained already (a restore after a failed write: no second wait).
    Already,
    /// No load balancer asked within the first-check window; restarting anyway.
    Unasked,
}

/// The drain state of this node, shared by the engine and the agent-check server.
#[derive(Clone)]
pub struct LoadBalancerDrain {
    inner: Arc<Inner>,
}

struct Inner {
    draining: AtomicBool,
    /// Count of `drain` answers given.
    heard: watch::Sender<u64>,
    settle: Duration,
}

impl std::fmt::Debug for LoadBalancerDrain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancerDrain")
            .field("draining", &self.is_draining())
            .field("settle", &self.inner.settle)
            .finish()
    }
}

impl LoadBalancerDrain {
    /// A drain that waits `settle` after a load balancer heard `drain`.
    pub fn new(settle: Duration) -> LoadBalancerDrain {
        LoadBalancerDrain {
            inner: Arc::new(Inner {
                draining: AtomicBool::new(false),
                heard: watch::channel(0).0,
                settle,
            }),
        }
    }

    /// Whether the node is drained now.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// The answer to one agent check (what the server writes; counted when it is `drain`).
    pub fn answer(&self) -> Answer {
        if self.is_draining() {
            self.inner.heard.send_modify(|n| *n += 1);
            Answer::Drain
        } else {
            Answer::Ready
        }
    }

    /// Drains the node and returns once it may restart: a load balancer heard `drain` and the
    /// drain seconds passed, or no load balancer asked within the drain seconds plus a grace.
    pub async fn drain(&self) -> Drained {
        if self.inner.draining.swap(true, Ordering::SeqCst) {
            return Drained::Already;
        }
        let mut heard = self.inner.heard.subscribe();
        let before = *heard.borrow_and_update();
        let first = self.inner.settle + FIRST_CHECK_GRACE;
        let asked = tokio::time::timeout(first, heard.wait_for(|n| *n > before))
            .await
            .is_ok_and(|r| r.is_ok());
        if !asked {
            return Drained::Unasked;
        }
        tokio::time::sleep(self.inner.settle).await;
        Drained::Heard
    }

    /// Back in the pool; `true` if the node was drained.
    pub fn ready(&self) -> bool {
        self.inner.draining.swap(false, Ordering::SeqCst)
    }

    /// Serves agent checks on `listener` until the task is dropped: one line per connection,
    /// then close. Nothing is read (haproxy's optional `agent-send` text is not needed).
    pub async fn serve(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((mut stream, _)) => {
                    let line = self.answer().line();
                    tokio::spawn(async move {
                        let write = async {
                            stream.write_all(line).await?;
                            stream.shutdown().await
                        };
                        if let Err(e) = tokio::time::timeout(Duration::from_secs(2), write).await {
                            tracing::debug!(error = %e, "agent check answer not sent");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a load balancer agent check");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn ask(addr: std::net::SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_real_socket_answers_ready_then_drain_then_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let lb = LoadBalancerDrain::new(Duration::from_millis(50));
        tokio::spawn(lb.clone().serve(listener));
        assert_eq!(ask(addr).await, "ready\n");

        let draining = tokio::spawn({
            let lb = lb.clone();
            async move { lb.drain().await }
        });
        // The drain waits for a load balancer to hear it.
        while !lb.is_draining() {
            tokio::task::yield_now().await;
        }
        assert!(!draining.is_finished());
        assert_eq!(ask(addr).await, "drain\n");
        assert_eq!(draining.await.unwrap(), Drained::Heard);
        assert_eq!(ask(addr).await, "drain\n");
        assert!(lb.ready());
        assert_eq!(ask(addr).await, "ready\n");
        assert!(!lb.ready(), "ready twice: the second finds nothing drained");
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_asking_does_not_block_the_restart() {
        let lb = LoadBalancerDrain::new(Duration::from_secs(4));
        let t0 = tokio::time::Instant::now();
        assert_eq!(lb.drain().await, Drained::Unasked);
        assert_eq!(t0.elapsed(), Duration::from_secs(4) + FIRST_CHECK_GRACE);
        assert!(lb.is_draining(), "still drained until the restart is over");
        assert_eq!(lb.answer(), Answer::Drain);
    }

    #[tokio::test(start_paused = true)]
    async fn heard_then_the_drain_seconds_pass_before_the_restart() {
        let lb = LoadBalancerDrain::new(Duration::from_secs(4));
        let t0 = tokio::time::Instant::now();
        let poller = tokio::spawn({
            let lb = lb.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                lb.answer()
            }
        });
        assert_eq!(lb.drain().await, Drained::Heard);
        assert_eq!(poller.await.unwrap(), Answer::Drain);
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(5),
            "1 s to the check + 4 s"
        );
        assert_eq!(lb.drain().await, Drained::Already);
        assert_eq!(t0.elapsed(), Duration::from_secs(5), "no second wait");
    }

    #[test]
    fn answer_lines_are_haproxy_words() {
        assert_eq!(Answer::Ready.line(), b"ready\n");
        assert_eq!(Answer::Drain.line(), b"drain\n");
    }
}
