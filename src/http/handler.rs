//! Request routing: telemetry path, landing page, 404/405, basic auth.
//!
//! Every response is built without fallible steps, so no request can make
//! the handler fail; an encoding error becomes a 500 with a log line.

use std::convert::Infallible;
use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING,
    CONTENT_LENGTH, CONTENT_TYPE, VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Encoder as _, Registry, TextEncoder};

use super::web_config::BasicAuth;

/// The Prometheus text exposition format.
pub(crate) const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// What every connection's handler shares.
pub(crate) struct AppState {
    pub(crate) telemetry_path: String,
    pub(crate) registry: Registry,
    pub(crate) basic_auth: Option<Arc<BasicAuth>>,
    /// `http_server_config.headers`, added to every response.
    pub(crate) extra_headers: Vec<(hyper::header::HeaderName, HeaderValue)>,
    /// The landing page, rendered once.
    pub(crate) landing_page: Bytes,
}

impl AppState {
    pub(crate) fn new(
        telemetry_path: String,
        registry: Registry,
        web_config: Option<&super::WebConfig>,
    ) -> AppState {
        let landing_page = Bytes::from(landing_page(&telemetry_path));
        AppState {
            telemetry_path,
            registry,
            basic_auth: web_config.and_then(|c| c.basic_auth.clone()),
            extra_headers: web_config.map(|c| c.headers.clone()).unwrap_or_default(),
            landing_page,
        }
    }
}

pub(crate) async fn handle<B>(
    state: Arc<AppState>,
    req: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = route(&state, &req).await;
    let headers = response.headers_mut();
    for (name, value) in &state.extra_headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(response)
}

async fn route<B>(state: &AppState, req: &Request<B>) -> Response<Full<Bytes>> {
    if let Some(auth) = &state.basic_auth {
        if !auth.allows(req.headers().get(AUTHORIZATION)).await {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            return response;
        }
    }
    let path = req.uri().path();
    let is_head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !is_head && (path == state.telemetry_path || path == "/") {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed: use GET or HEAD\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == state.telemetry_path {
        metrics(state, req.headers(), is_head)
    } else if path == "/" {
        with_body(StatusCode::OK, HTML, state.landing_page.clone(), is_head)
    } else {
        text(StatusCode::NOT_FOUND, "Not found\n")
    }
}

fn metrics(state: &AppState, request_headers: &HeaderMap, is_head: bool) -> Response<Full<Bytes>> {
    let families = state.registry.gather();
    let mut body = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&families, &mut body) {
        tracing::error!(error = %e, "cannot encode metrics");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics; see the exporter's log\n",
        );
    }
    let mut gzipped = false;
    if accepts_gzip(request_headers) {
        match gzip(&body) {
            Ok(compressed) => {
                body = compressed;
                gzipped = true;
            }
            Err(e) => tracing::warn!(error = %e, "gzip failed; sending the metrics uncompressed"),
        }
    }
    let mut response = with_body(StatusCode::OK, TEXT_FORMAT, Bytes::from(body), is_head);
    let headers = response.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzipped {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_body(
        status,
        PLAIN_TEXT,
        Bytes::from_static(body.as_bytes()),
        false,
    )
}

/// A response with `body`; for HEAD, no body but the GET's length.
fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    is_head: bool,
) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(if is_head { Bytes::new() } else { body }));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if is_head {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3).
///
/// An explicit `gzip` (or `x-gzip`) entry decides by its q-value; without
/// one, `*` does. `q=0` means "not acceptable". An entry whose q-value is
/// malformed is ignored. No header, or no matching entry, means identity.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip_q: Option<u16> = None;
    let mut star_q: Option<u16> = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                if let Some((name, v)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(v.trim());
                    }
                }
            }
            let Some(q) = q else {
                continue;
            };
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip_q
                } else if coding == "*" {
                    &mut star_q
                } else {
                    continue;
                };
            // Listed twice: the most favourable entry wins.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    match gzip_q {
        Some(q) => q > 0,
        None => star_q.is_some_and(|q| q > 0),
    }
}

/// Parses a q-value (`0`, `0.5`, `1.000`) into thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = match s.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn landing_page(telemetry_path: &str) -> String {
    let path = html_escape(telemetry_path);
    let version = html_escape(env!("CARGO_PKG_VERSION"));
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head><meta charset=\"utf-8\"><title>maillog_exporter</title></head>\n\
         <body>\n\
         <h1>maillog_exporter</h1>\n\
         <p>Prometheus exporter for mail server logs, version {version}.</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a> ({path})</li></ul>\n\
         </body>\n\
         </html>\n"
    )
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn accept_encoding_decides_gzip_by_q_value() {
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["gzip"], true),
            (&["GZIP"], true),
            (&["x-gzip"], true),
            (&["gzip, deflate, br"], true),
            (&["br;q=1.0, gzip;q=0.5"], true),
            (&["gzip;q=0"], false),
            (&["gzip;q=0.000"], false),
            (&["gzip ; q=0"], false),
            (&["gzip;q=0.001"], true),
            (&["gzip;q=1.000"], true),
            (&["gzip;q=1.5"], false),
            (&["gzip;q=abc"], false),
            (&["gzip;q=0.0001"], false),
            (&["identity"], false),
            (&["deflate"], false),
            (&["*"], true),
            (&["*;q=0"], false),
            (&["*, gzip;q=0"], false),
            (&["gzip;q=0, *"], false),
            (&["identity", "gzip"], true),
            (&[""], false),
            (&[",,;;=,"], false),
        ];
        for (values, want) in cases {
            assert_eq!(accepts_gzip(&with_accept(values)), *want, "{values:?}");
        }
    }

    #[test]
    fn landing_page_escapes_the_path() {
        let page = landing_page("/m?a=<b>&c=\"d\"");
        assert!(page.contains("href=\"/m?a=&lt;b&gt;&amp;c=&quot;d&quot;\""));
        assert!(page.contains("<title>maillog_exporter</title>"));
        assert!(page.contains(env!("CARGO_PKG_VERSION")));
    }
}
