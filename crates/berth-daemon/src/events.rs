//! `GET /events`: past events from the engine's ring (`since`), then live ones until `until`.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Response};
use axum::routing::get;
use axum::Router;
use berth_engine::events::{parse_api_time, Event, EventFilter};

use crate::error::{ApiError, ApiResult};
use crate::params::Query;
use crate::server::AppState;

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/events", get(events))
}

fn line(e: &Event) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

async fn events(State(st): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Response<Body>> {
    let q = Query::parse(raw.as_deref());
    let since = parse_api_time(q.get("since").unwrap_or("")).map_err(ApiError::bad_request)?;
    let until = parse_api_time(q.get("until").unwrap_or("")).map_err(ApiError::bad_request)?;
    let filter = EventFilter::new(q.filters().map_err(ApiError::bad_request)?)
        .map_err(ApiError::bad_request)?;
    let (past, mut rx) = st.engine.events().subscribe();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let in_range = move |e: &Event| {
        since.is_none_or(|s| e.time_nano >= s) && until.is_none_or(|u| e.time_nano <= u)
    };
    tokio::spawn(async move {
        if since.is_some() {
            for e in past.iter().filter(|e| in_range(e) && filter.matches(e)) {
                if tx.send(Ok(line(e))).await.is_err() {
                    return;
                }
            }
        }
        if until.is_some_and(|u| u <= now) {
            return;
        }
        let deadline = until.map(|u| {
            tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64)
        });
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            tokio::select! {
                r = next => match r {
                    None => return, // until reached
                    Some(Ok(e)) => {
                        if in_range(&e) && filter.matches(&e) && tx.send(Ok(line(&e))).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    Some(Err(_)) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(out);
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}
