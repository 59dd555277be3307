//! The local health endpoint of a component, checked over HTTPS as kubelet's probes do.
//!
//! Where to knock comes from the rendered Pod's startup probe (host, port, path, scheme), so
//! probe and port overrides in the spec are honoured: kube-apiserver `/livez` on its secure
//! port at the advertise address, kube-controller-manager `/healthz` on 10257 and
//! kube-scheduler `/livez` on 10259 at their bind address by default.
//!
//! **The server certificate is not verified.** kubelet's HTTPS probes skip verification too
//! (they connect with `InsecureSkipVerify`): the components serve self-signed or
//! cluster-CA-signed certificates whose names need not match the probe host. The check proves
//! that the local process answers its health path, not who it is; it carries no credentials
//! and sends nothing secret. The TLS handshake itself is real (rustls), and the signatures in
//! it are still checked against the certificate the server presents.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

/// Longest a single check may take, whatever the probe's `timeoutSeconds` says: the agent
/// checks every second and wants an answer before the next check.
pub const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a component's health is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host (IP or name) to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// HTTP path, for example `/livez`.
    pub path: String,
    /// Whether to speak TLS (`scheme: HTTPS`, the default for control-plane probes).
    pub https: bool,
    /// How long one check may take.
    pub timeout: Duration,
}

impl Endpoint {
    /// The endpoint's URL, for messages.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }

    /// The endpoint of a Pod's first container, from its startup probe (else its liveness
    /// probe). A probe without a host means the Pod IP, which for a host-network static Pod
    /// is the node: `default_host` is used (`127.0.0.1` reaches it). `None` when the Pod has
    /// no HTTP probe.
    pub fn from_pod(pod: &Pod, default_host: &str) -> Option<Endpoint> {
        let container = pod.spec.as_ref()?.containers.first()?;
        let probe = container
            .startup_probe
            .as_ref()
            .or(container.liveness_probe.as_ref())?;
        from_probe(container, probe, default_host)
    }
}

fn from_probe(container: &Container, probe: &Probe, default_host: &str) -> Option<Endpoint> {
    let get = probe.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => {
            container
                .ports
                .as_ref()?
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    let port = u16::try_from(port).ok().filter(|p| *p > 0)?;
    let host = get
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| default_host.to_string());
    let timeout = probe
        .timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(MAX_CHECK_TIMEOUT)
        .clamp(Duration::from_secs(1), MAX_CHECK_TIMEOUT);
    Some(Endpoint {
        host,
        port,
        path: get.path.clone().unwrap_or_else(|| "/".to_string()),
        https: get
            .scheme
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("https")),
        timeout,
    })
}

/// Something that can tell whether an endpoint is healthy.
pub trait HealthCheck: Send + Sync {
    /// `Ok` when the endpoint answered with a 2xx status, else what went wrong.
    fn check<'a>(&'a self, endpoint: &'a Endpoint) -> BoxFuture<'a, Result<(), String>>;
}

/// The real check: TCP, a rustls handshake that does not verify the server certificate,
/// HTTP/1.1 `GET`, 2xx = healthy, bounded by the endpoint's timeout.
#[derive(Clone)]
pub struct HttpsCheck {
    tls: tokio_rustls::TlsConnector,
}

impl Default for HttpsCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpsCheck {
    /// A checker with its own rustls configuration (ring provider).
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(ProbeVerifier { provider }))
                    .with_no_client_auth()
            })
            // The ring provider supports the safe defaults; this cannot fail.
            .unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ProbeVerifier {
                        provider: Arc::new(rustls::crypto::ring::default_provider()),
                    }))
                    .with_no_client_auth()
            });
        HttpsCheck {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    async fn get(&self, ep: &Endpoint) -> Result<(), String> {
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let status = if ep.https {
            let name = ServerName::try_from(ep.host.clone())
                .map_err(|e| format!("bad host {:?}: {e}", ep.host))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            request(TokioIo::new(tls), ep).await?
        } else {
            request(TokioIo::new(tcp), ep).await?
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

async fn request<I>(io: I, ep: &Endpoint) -> Result<http::StatusCode, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let authority = if ep.host.contains(':') {
        format!("[{}]:{}", ep.host, ep.port)
    } else {
        format!("{}:{}", ep.host, ep.port)
    };
    let req = http::Request::get(ep.path.as_str())
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "kubeplane-agent")
        .header(http::header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request for {}: {e}", ep.url()))?;
    let result = sender.send_request(req).await;
    drop(sender);
    conn.abort();
    result
        .map(|r| r.status())
        .map_err(|e| format!("HTTP request: {e}"))
}

impl HealthCheck for HttpsCheck {
    fn check<'a>(&'a self, ep: &'a Endpoint) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match tokio::time::timeout(ep.timeout, self.get(ep)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {}s", ep.timeout.as_secs())),
            }
        })
    }
}

/// Accepts any server certificate (as kubelet's HTTPS probes do) while still checking the
/// handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct ProbeVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ProbeVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::tls::{Reply, https_endpoint};
    use std::sync::atomic::{AtomicU8, Ordering};

    /// What the test server does with the next connection.
    const OK: u8 = 0;
    const FAIL_500: u8 = 1;
    const CLOSE: u8 = 2;
    const HANG: u8 = 3;

    /// The test kit's HTTPS endpoint, its behaviour flipped between healthy and failing.
    async fn server(mode: Arc<AtomicU8>) -> u16 {
        https_endpoint(move |head| match mode.load(Ordering::SeqCst) {
            CLOSE => Reply::Close,
            _ if head.is_empty() => Reply::code(200), // before the handshake: go on
            m => {
                assert!(head.starts_with("GET /livez HTTP/1.1\r\n"), "{head}");
                match m {
                    OK => Reply::Status(200, "ok".into()),
                    HANG => Reply::Hang(Duration::from_secs(30)),
                    _ => Reply::Status(500, "failed".into()),
                }
            }
        })
        .await
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            path: "/livez".into(),
            https: true,
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn checker_sees_each_state_of_a_real_https_endpoint() {
        let mode = Arc::new(AtomicU8::new(OK));
        let port = server(mode.clone()).await;
        let check = HttpsCheck::new();
        assert_eq!(check.check(&ep(port)).await, Ok(()));
        mode.store(FAIL_500, Ordering::SeqCst);
        let e = check.check(&ep(port)).await.unwrap_err();
        assert!(e.contains("500"), "{e}");
        mode.store(CLOSE, Ordering::SeqCst);
        let e = check.check(&ep(port)).await.unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
        mode.store(HANG, Ordering::SeqCst);
        let e = check.check(&ep(port)).await.unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        mode.store(OK, Ordering::SeqCst);
        assert_eq!(check.check(&ep(port)).await, Ok(()));
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = HttpsCheck::new().check(&ep(port)).await.unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
    }

    #[test]
    fn endpoint_comes_from_the_rendered_startup_probe() {
        use crate::api::{ControlPlaneConfigSpec, NodeFacts};
        let spec: ControlPlaneConfigSpec = serde_json::from_value(serde_json::json!({
            "kubernetesVersion": "v1.36.2",
            "scheduler": {"extraArgs": [{"name": "secure-port", "value": "10300"}]},
            "controllerManager": {"extraArgs": [{"name": "bind-address", "value": "0.0.0.0"}]}
        }))
        .unwrap();
        let node = NodeFacts {
            node_name: "cp-1".into(),
            advertise_address: Some("10.0.0.11".into()),
            ..Default::default()
        };
        let r = crate::render::render(&crate::render::RenderInput {
            spec: &spec,
            node: &node,
            encryption_config_sha256: None,
        })
        .unwrap();
        let eps: Vec<String> = r
            .pods
            .iter()
            .map(|p| Endpoint::from_pod(&p.pod, "127.0.0.1").unwrap().url())
            .collect();
        assert_eq!(
            eps,
            vec![
                "https://10.0.0.11:6443/livez",
                "https://127.0.0.1:10257/healthz",
                "https://127.0.0.1:10300/livez",
            ]
        );
        assert_eq!(
            Endpoint::from_pod(&r.pods[0].pod, "x").unwrap().timeout,
            MAX_CHECK_TIMEOUT
        );
        assert_eq!(Endpoint::from_pod(&Pod::default(), "x"), None);
    }
}
