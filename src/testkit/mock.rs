//! The mocked API of the unit tests, in the style of kube-rs/controller-rs `fixtures.rs`: a
//! `kube::Client` over a `tower_test::mock` pair, whose other end a test answers request by
//! request (the operator's scenario verifier, the agent's status reporter tests). Also the
//! pieces of the wire the kit's fake API server ([`super::apiserver`]) speaks — query strings,
//! `Status` objects, Secrets.
//!
//! The client side (`pair`, `expect`, `json_response`) exists for the crate's unit tests only:
//! `tower-test` is a dev-dependency.

use std::collections::BTreeMap;

use serde_json::{Value, json};

#[cfg(test)]
pub use self::client::*;

/// A `metav1.Status` failure, as the API server answers an error.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A Secret as the API server returns it: `data` base64-encoded.
pub fn secret<K: AsRef<str>>(namespace: &str, name: &str, data: &BTreeMap<K, Vec<u8>>) -> Value {
    let data: BTreeMap<&str, String> = data.iter().map(|(k, v)| (k.as_ref(), base64(v))).collect();
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": namespace}, "data": data})
}

/// Standard base64, as Secret data is encoded.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Percent-encoding of a label selector as kube's query builder writes it.
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a space) of a query string component.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters of a query string (`a=1&b=x%3Dy`), decoded.
pub fn query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod client {
    use http::{Method, Request, Response};
    use kube::Client;
    use serde_json::Value;

    /// The test's end of the mocked API.
    pub type Handle =
        tower_test::mock::Handle<Request<kube::client::Body>, Response<kube::client::Body>>;

    /// Where the answer to one request goes.
    pub type Send = tower_test::mock::SendResponse<Response<kube::client::Body>>;

    /// A client whose requests arrive at the returned handle.
    pub fn pair() -> (Client, Handle) {
        let (service, handle) = tower_test::mock::pair();
        (Client::new(service, "default"), handle)
    }

    /// A JSON response.
    pub fn json_response(status: u16, body: &Value) -> Response<kube::client::Body> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(
                serde_json::to_vec(body).expect("json"),
            ))
            .expect("response")
    }

    /// The next request, which must be `method uri` (path and query); returns its JSON body
    /// (`Null` when empty) and where the answer goes.
    pub async fn expect(handle: &mut Handle, method: Method, uri: &str) -> (Value, Send) {
        let (req, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected {method} {uri}, but the client stopped"));
        assert_eq!(
            (req.method(), req.uri().to_string().as_str()),
            (&method, uri),
            "unexpected request"
        );
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (body, send)
    }
}
