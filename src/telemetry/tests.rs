use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;

use super::*;

/// A real HTTP/1.1 GET over TCP.
async fn get_path(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

async fn start(registry: Registry, health: Health) -> SocketAddr {
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, registry, health));
    addr
}

#[tokio::test]
async fn readyz_follows_health_and_healthz_follows_liveness() {
    let health = Health::new();
    let addr = start(registry(), health.clone()).await;

    assert_eq!(get_path(addr, "/readyz").await.0, 503);
    assert_eq!(get_path(addr, "/readyz").await.2, "starting\n");
    health.set_ready("leader: reconciling");
    let (code, _, body) = get_path(addr, "/readyz").await;
    assert_eq!((code, body.as_str()), (200, "leader: reconciling\n"));
    health.set_not_ready("lost the lease");
    assert_eq!(get_path(addr, "/readyz").await.0, 503);

    assert_eq!(get_path(addr, "/healthz").await.0, 200);
    health.set_live(false);
    assert_eq!(get_path(addr, "/healthz").await.0, 503);
    assert_eq!(get_path(addr, "/nope").await.0, 404);
}

#[tokio::test]
async fn metrics_are_prefixed_openmetrics_text() {
    let mut reg = registry();
    let c = Counter::<u64>::default();
    reg.register("widgets", "Widgets seen", c.clone());
    c.inc_by(3);
    let addr = start(reg, Health::new()).await;
    let (code, ctype, body) = get_path(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(ctype, OPENMETRICS_CONTENT_TYPE);
    assert!(body.contains("kubeplane_widgets_total 3"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn bad_or_taken_addresses_are_clear_errors() {
    let e = bind("localhost").await.unwrap_err();
    assert!(matches!(e, TelemetryError::Address { .. }));
    assert!(e.to_string().contains("\"localhost\""), "{e}");

    let taken = bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let e = bind(&addr).await.unwrap_err();
    assert!(matches!(e, TelemetryError::Bind { .. }), "{e}");
    assert!(e.to_string().contains("--metrics-addr"), "{e}");
}
