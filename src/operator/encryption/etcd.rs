//! Counting stored objects per encryption key, straight from etcd: range reads over the etcd
//! v3 JSON gateway (`POST /v3/kv/range`, served on the client port by default since etcd 3.3,
//! etcd.io/docs/v3.5/dev-guide/api_grpc_gateway), over mutual TLS with a client certificate
//! from a Secret. Read-only; the values are looked at for their prefix only and never kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::encryption::{classify_stored, etcd_prefix};
use crate::validation::parse_url_host_port;

/// Keys per range request.
const PAGE: u64 = 500;
/// Time one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// PEM client credentials for etcd (the Secret's `ca.crt`, `tls.crt`, `tls.key`).
pub struct Credentials {
    /// CA bundle.
    pub ca: Vec<u8>,
    /// Client certificate chain.
    pub cert: Vec<u8>,
    /// Client key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// A read-only etcd client.
pub struct Etcd {
    endpoints: Vec<String>,
    tls: tokio_rustls::TlsConnector,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    kvs: Vec<Kv>,
    #[serde(default)]
    more: bool,
}

#[derive(Deserialize)]
struct Kv {
    key: String,
    #[serde(default)]
    value: String,
}

impl Etcd {
    /// A client for the endpoints with the credentials.
    pub fn new(endpoints: Vec<String>, creds: &Credentials) -> Result<Etcd, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&creds.ca) {
            let c = c.map_err(|e| format!("ca.crt: {e}"))?;
            roots.add(c).map_err(|e| format!("ca.crt: {e}"))?;
        }
        if roots.is_empty() {
            return Err("ca.crt holds no certificate".into());
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&creds.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls.crt: {e}"))?;
        if chain.is_empty() {
            return Err("tls.crt holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&creds.key)
            .map_err(|_| "tls.key holds no private key".to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("tls.crt/tls.key: {e}"))?;
        Ok(Etcd {
            endpoints,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Objects per key name (`identity` for plain text) under each resource's etcd prefix.
    pub async fn count(
        &self,
        prefix: &str,
        resources: &[String],
    ) -> Result<BTreeMap<String, i64>, String> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let mut counts = BTreeMap::new();
            let mut ok = true;
            for r in resources {
                if let Err(e) = self
                    .count_prefix(ep, &etcd_prefix(prefix, r), &mut counts)
                    .await
                {
                    errors.push(format!("{ep}: {e}"));
                    ok = false;
                    break;
                }
            }
            if ok {
                return Ok(counts);
            }
        }
        Err(errors.join("; "))
    }

    async fn count_prefix(
        &self,
        endpoint: &str,
        prefix: &str,
        counts: &mut BTreeMap<String, i64>,
    ) -> Result<(), String> {
        let end = range_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let body = serde_json::json!({
                "key": STANDARD.encode(&from),
                "range_end": STANDARD.encode(&end),
                "limit": PAGE,
            });
            let resp: RangeResponse = self.post(endpoint, "/v3/kv/range", &body).await?;
            let Some(last) = resp.kvs.last().map(|kv| kv.key.clone()) else {
                return Ok(());
            };
            for kv in &resp.kvs {
                let value = STANDARD
                    .decode(&kv.value)
                    .map_err(|e| format!("value not base64: {e}"))?;
                *counts
                    .entry(classify_stored(&value).name().to_string())
                    .or_insert(0) += 1;
            }
            if !resp.more {
                return Ok(());
            }
            from = STANDARD
                .decode(last)
                .map_err(|e| format!("key not base64: {e}"))?;
            from.push(0);
        }
    }

    async fn post<T: for<'de> Deserialize<'de>>(
        &self,
        endpoint: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, String> {
        let (_, host, port) =
            parse_url_host_port(endpoint).ok_or_else(|| format!("not a URL: {endpoint}"))?;
        let fut = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let name = ServerName::try_from(host.to_string())
                .map_err(|e| format!("bad host {host:?}: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
            let conn = tokio::spawn(conn);
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let req = http::Request::post(path)
                .header(http::header::HOST, authority)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "kubeplane-operator")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| e.to_string())?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("HTTP request: {e}"))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("HTTP body: {e}"))?
                .to_bytes();
            drop(sender);
            conn.abort();
            if !status.is_success() {
                return Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ));
            }
            serde_json::from_slice(&bytes).map_err(|e| format!("bad response: {e}"))
        };
        tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| format!("timed out after {}s", TIMEOUT.as_secs()))?
    }
}

/// The end of the range of keys starting with `prefix` (etcd's `clientv3.GetPrefixRangeEnd`:
/// the prefix with its last byte below 0xff incremented).
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_increments_the_last_byte() {
        assert_eq!(
            range_end(b"/registry/secrets/"),
            b"/registry/secrets0".to_vec()
        );
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b"\xff"), vec![0]);
    }

    #[test]
    fn bad_credentials_are_named_not_printed() {
        let creds = Credentials {
            ca: b"not pem".to_vec(),
            cert: Vec::new(),
            key: b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n".to_vec(),
        };
        let err = Etcd::new(vec!["https://127.0.0.1:2379".into()], &creds)
            .err()
            .expect("refused");
        assert!(err.contains("ca.crt"), "{err}");
        assert!(!format!("{creds:?}").contains("c2VjcmV0"));
    }
}
