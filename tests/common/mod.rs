//! Helpers shared by the integration tests (and the e2e suite): a real HTTPS health endpoint,
//! directory snapshots, running the built `kubeplane` binary, plain HTTP GETs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

/// The built binary.
pub fn kubeplane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubeplane"))
}

/// Runs the binary with arguments, returning its output.
pub fn run(args: &[&str]) -> Output {
    kubeplane()
        .args(args)
        .env_remove("NODE_IP")
        .env("KUBEPLANE_LOG", "warn")
        .output()
        .expect("run kubeplane")
}

/// Every file under `dir`, with (inode, mtime in ns, size).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, i128, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            out.insert(e.path(), (m.ino(), mtime, m.len()));
        }
    }
    out
}

/// A real HTTPS endpoint (the test kit's, `kubeplane::testkit::tls`) on 127.0.0.1 that
/// answers every request with the status code held in the returned cell (0 = close the
/// connection). Returns the port.
pub async fn https_endpoint(code: Arc<AtomicU16>) -> u16 {
    kubeplane::testkit::tls::https_endpoint(move |_| {
        kubeplane::testkit::tls::Reply::code(code.load(Ordering::SeqCst))
    })
    .await
}

/// `GET path` over HTTP/1.0 on 127.0.0.1:`port`: `(status, body)`, or `(0, "")` when nothing
/// answers.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// xorshift64*: enough randomness for kill points, no extra crate.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
