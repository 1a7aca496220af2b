//! The HTTP seam: [`Transport`] is what the registry client needs from HTTP (a GET with
//! headers, status, headers and a streamed body); [`UreqTransport`] is the real one.

use std::io::Read;
use std::time::Duration;

/// A response: status, headers (names lower-case) and the body as a stream.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read + Send>,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// HTTP GET as the registry client uses it. `allow_http` is false for registries that must
/// be reached over HTTPS: a plain-HTTP URL (or a redirect to one) is then an error.
pub trait Transport: Send + Sync {
    fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        allow_http: bool,
    ) -> Result<HttpResponse, ureq::Error>;
}

/// `ureq` with rustls and the webpki roots; redirects (blob CDNs) are followed without
/// the Authorization header.
pub struct UreqTransport {
    https_only: ureq::Agent,
    any: ureq::Agent,
}

impl std::fmt::Debug for UreqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UreqTransport")
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        let agent = |https_only: bool| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .https_only(https_only)
                .timeout_connect(Some(Duration::from_secs(15)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .user_agent(concat!("oxivirt-image/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Self {
            https_only: agent(true),
            any: agent(false),
        }
    }
}

impl Transport for UreqTransport {
    fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        allow_http: bool,
    ) -> Result<HttpResponse, ureq::Error> {
        let agent = if allow_http {
            &self.any
        } else {
            &self.https_only
        };
        let mut req = agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.call()?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Box::new(resp.into_body().into_reader());
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}
