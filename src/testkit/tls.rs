//! The one self-signed HTTPS endpoint of the test kit: a tokio-rustls acceptor with an rcgen
//! certificate, and a server that reads one request head per connection and answers what the
//! test's closure says (a status, a closed connection, or no answer at all).
//!
//! Used by the agent's health checker tests, the fake kubelet's probe endpoints
//! ([`crate::agent::runtime::fake`]), the integration tests (`tests/common`) and the idle
//! benchmark.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// A TLS acceptor with a fresh self-signed certificate for `names` (DNS names or IPs).
pub fn self_signed_acceptor(names: &[&str]) -> io::Result<TlsAcceptor> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())
        .map_err(io::Error::other)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .map_err(io::Error::other)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What the endpoint does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer with this status code and body.
    Status(u16, String),
    /// Close the connection before the TLS handshake.
    Close,
    /// Accept, read the request, and answer nothing for this long.
    Hang(Duration),
}

impl Reply {
    /// `code` with an empty body; 0 means [`Reply::Close`].
    pub fn code(code: u16) -> Self {
        if code == 0 {
            Reply::Close
        } else {
            Reply::Status(code, String::new())
        }
    }
}

/// Reads one HTTP request head (up to the blank line); `None` when the peer closes first or
/// the head exceeds 64 KiB.
pub async fn read_request_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Writes an HTTP/1.1 answer with `code` and `body`, then closes the connection.
pub async fn write_answer<S: AsyncWrite + Unpin>(s: &mut S, code: u16, body: &str) {
    let resp = format!(
        "HTTP/1.1 {code} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

/// Serves HTTPS on `listener`, one request per connection. `reply` is asked twice per
/// connection: first with an empty head, before the TLS handshake ([`Reply::Close`] then drops
/// the connection, anything else goes on), then with the request head, and its answer is sent.
/// Runs until the runtime ends.
pub fn serve<F>(listener: tokio::net::TcpListener, acceptor: TlsAcceptor, reply: F)
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, reply) = (acceptor.clone(), reply.clone());
            tokio::spawn(async move {
                if reply("") == Reply::Close {
                    return;
                }
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(head) = read_request_head(&mut tls).await else {
                    return;
                };
                match reply(&head) {
                    Reply::Status(code, body) => write_answer(&mut tls, code, &body).await,
                    Reply::Hang(d) => tokio::time::sleep(d).await,
                    Reply::Close => {}
                }
            });
        }
    });
}

/// A self-signed HTTPS endpoint on 127.0.0.1 (a free port) answering `reply(request head)`;
/// returns the port.
pub async fn https_endpoint<F>(reply: F) -> u16
where
    F: Fn(&str) -> Reply + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    let acceptor = self_signed_acceptor(&["localhost", "127.0.0.1"]).expect("TLS acceptor");
    serve(listener, acceptor, reply);
    port
}
