//! Request hygiene on every listener: JSON bodies must say so (dockerd's Content-Type check),
//! cross-origin requests are refused on TCP unless `--api-cors-header` allows them, and slow
//! or silent clients are timed out (the header timeout is hyper's; the body timeout is
//! [`IdleBody`]). Together with TLS this is what makes a TCP listener safe to expose: a web
//! page can neither send a "simple" `text/plain` create nor any request that carries its
//! `Origin`, and a client that opens connections and sends nothing cannot hold them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::error::ApiError;

/// Default time a client has to send a request's headers (nginx's `client_header_timeout`);
/// it also bounds the TLS handshake and how long a kept-alive connection may sit idle.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest silence while a request body is being read (nginx's `client_body_timeout`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the listeners enforce; the same for every listener except where noted.
#[derive(Clone, Debug)]
pub struct Hygiene {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// `--api-cors-header`: the `Access-Control-Allow-Origin` value (dockerd's flag). Requests
    /// carrying an `Origin` it does not allow are refused on TCP.
    pub cors: Option<String>,
}

impl Default for Hygiene {
    fn default() -> Self {
        Hygiene {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            cors: None,
        }
    }
}

/// Go's `mime.ParseMediaType`, as far as dockerd's check needs it: the lower-cased media type,
/// or the error Go gives.
fn media_type(ct: &str) -> Result<String, &'static str> {
    let base = ct.split(';').next().unwrap_or("").trim();
    if base.is_empty() {
        return Err("mime: no media type");
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b) && b != b' ')
    };
    let Some((major, minor)) = base.split_once('/') else {
        return Err("mime: expected slash after first token");
    };
    if !token(major) {
        return Err("mime: expected token after slash");
    }
    if minor.is_empty() {
        return Err("mime: expected token after slash");
    }
    if !token(minor) {
        return Err("mime: unexpected content after media subtype");
    }
    Ok(base.to_ascii_lowercase())
}

/// dockerd's `CheckForJSON`: a request without a body may omit `Content-Type`; otherwise it
/// must be `application/json` (parameters such as `charset` allowed). Its 400 and words.
pub fn check_json(headers: &HeaderMap, has_body: bool) -> Result<(), ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if ct.is_empty() && !has_body {
        return Ok(());
    }
    match media_type(&ct) {
        Err(e) => Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): {e}"
        ))),
        Ok(m) if m == "application/json" => Ok(()),
        Ok(_) => Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        ))),
    }
}

/// The body of a JSON endpoint, after dockerd's Content-Type check.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        // The header check comes first: a refused body is not read at all.
        let declared = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = headers.contains_key(axum::http::header::TRANSFER_ENCODING);
        if declared.is_some_and(|n| n > 0) || chunked {
            check_json(&headers, true)?;
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status().as_u16(), e.body_text()))?;
        check_json(&headers, !bytes.is_empty())?;
        Ok(JsonBody(bytes))
    }
}

/// `Origin` on a TCP listener: allowed only when `--api-cors-header` is `*` or names it (one
/// origin, or a comma-separated list). A browser sends `Origin` on every cross-origin request
/// that can change state, so refusing it stops a web page from driving the API (dockerd only
/// adds CORS headers; Berth refuses). Returns the `Access-Control-Allow-Origin` to send.
pub fn check_origin(
    cors: Option<&str>,
    headers: &HeaderMap,
    tcp: bool,
) -> Result<Option<HeaderValue>, ApiError> {
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let allowed = |o: &str| -> Option<HeaderValue> {
        let c = cors?;
        if c.trim() == "*" {
            return HeaderValue::from_str(c.trim()).ok();
        }
        c.split(',')
            .map(str::trim)
            .find(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
            .and_then(|a| HeaderValue::from_str(a).ok())
    };
    match (origin, cors) {
        (None, None) => Ok(None),
        // dockerd's CORS middleware: the configured value on every response.
        (None, Some(c)) => Ok(HeaderValue::from_str(c).ok()),
        (Some(o), _) => match allowed(&o) {
            Some(v) => Ok(Some(v)),
            None if tcp => Err(ApiError::new(
                403,
                format!(
                    "cross-origin request from {o} refused: requests carrying an Origin header \
                     are only accepted on TCP from origins allowed by --api-cors-header"
                ),
            )),
            None => Ok(None),
        },
    }
}

/// dockerd's CORS headers, added to a response when an origin is allowed.
pub fn add_cors_headers(resp: &mut Response<Body>, allow_origin: HeaderValue) {
    let h = resp.headers_mut();
    h.insert("Access-Control-Allow-Origin", allow_origin);
    h.insert(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, X-Registry-Auth"),
    );
    h.insert(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static("HEAD, GET, POST, DELETE, PUT, OPTIONS"),
    );
}

/// dockerd answers `OPTIONS` on any path with 200 (the CORS preflight).
pub fn preflight(method: &Method) -> Option<Response<Body>> {
    (method == Method::OPTIONS).then(|| {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::OK;
        r
    })
}

/// A request body that fails when the client sends nothing for `timeout` while the daemon
/// waits for it (time the handler spends elsewhere does not count).
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleBody {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> HttpBody for IdleBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.sleep = None;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.sleep = None;
                        Poll::Ready(Some(Err(format!(
                            "no request body data for {}s",
                            timeout.as_secs_f64()
                        )
                        .into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn content_type_rules_and_words_are_dockerds() {
        assert!(check_json(&headers(&[]), false).is_ok());
        assert!(check_json(&headers(&[("content-type", "application/json")]), true).is_ok());
        assert!(check_json(
            &headers(&[("content-type", "Application/JSON; charset=utf-8")]),
            true
        )
        .is_ok());
        let e = check_json(&headers(&[("content-type", "text/plain")]), true).err();
        assert_eq!(
            e.map(|e| e.message).as_deref(),
            Some("unsupported Content-Type header (text/plain): must be 'application/json'")
        );
        // Even without a body, a Content-Type given must be JSON (dockerd's rule).
        assert!(check_json(&headers(&[("content-type", "text/plain")]), false).is_err());
        let e = check_json(&headers(&[]), true).err();
        assert_eq!(
            e.map(|e| e.message).as_deref(),
            Some("malformed Content-Type header (): mime: no media type")
        );
        let e = check_json(&headers(&[("content-type", "json")]), true).err();
        assert_eq!(
            e.map(|e| e.message).as_deref(),
            Some("malformed Content-Type header (json): mime: expected slash after first token")
        );
        assert!(check_json(
            &headers(&[("content-type", "application/x-www-form-urlencoded")]),
            true
        )
        .is_err());
        assert!(check_json(
            &headers(&[("content-type", "multipart/form-data; b=x")]),
            true
        )
        .is_err());
    }

    #[test]
    fn origins_on_tcp_need_the_cors_flag() {
        let with = headers(&[("origin", "http://evil.example")]);
        let without = headers(&[]);
        assert!(check_origin(None, &without, true).expect("ok").is_none());
        let e = check_origin(None, &with, true).expect_err("refused");
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        // The unix socket is not reachable from a browser.
        assert!(check_origin(None, &with, false).expect("ok").is_none());
        assert_eq!(
            check_origin(Some("*"), &with, true).expect("ok"),
            Some(HeaderValue::from_static("*"))
        );
        assert_eq!(
            check_origin(Some("http://a.example, http://evil.example"), &with, true).expect("ok"),
            Some(HeaderValue::from_static("http://evil.example"))
        );
        assert!(check_origin(Some("http://a.example"), &with, true).is_err());
        assert_eq!(
            check_origin(Some("http://a.example"), &without, true).expect("ok"),
            Some(HeaderValue::from_static("http://a.example"))
        );
    }

    #[tokio::test]
    async fn a_silent_body_times_out_a_flowing_one_does_not() {
        use http_body_util::BodyExt;
        let (tx, rx) = futures_channel_body();
        let b = IdleBody::new(rx, Duration::from_millis(200));
        let t = tokio::spawn(async move { b.collect().await.map(|c| c.to_bytes()) });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"x")))).await;
        }
        drop(tx);
        assert_eq!(
            t.await.expect("join").ok(),
            Some(Bytes::from_static(b"xxxxx"))
        );
        let (_tx, rx) = futures_channel_body();
        let b = IdleBody::new(rx, Duration::from_millis(100));
        assert!(b.collect().await.is_err());
    }

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    fn futures_channel_body() -> (
        tokio::sync::mpsc::Sender<Chunk>,
        http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Chunk>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (
            tx,
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
    }
}
