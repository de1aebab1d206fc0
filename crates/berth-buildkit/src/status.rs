//! A build's status stream (`Control.Status`): vertexes (started, cached, completed, failed),
//! their logs and progress, kept from the start so a `Status` call that arrives late still
//! sees everything, and ended when the build is.

use crate::pb::moby::buildkit::v1::{StatusResponse, Vertex, VertexLog, VertexStatus};
use berth_build::builder::{Progress, VertexState};
use std::collections::HashMap;
use std::sync::Mutex;

fn now() -> prost_types::Timestamp {
    let t = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

#[derive(Default)]
struct Inner {
    log: Vec<StatusResponse>,
    done: bool,
    /// Vertexes seen, for their start times and names.
    vertexes: HashMap<String, Vertex>,
    warnings: Vec<String>,
}

/// One build's status history.
#[derive(Default)]
pub struct StatusLog {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
}

impl StatusLog {
    fn push(&self, r: StatusResponse) {
        if let Ok(mut i) = self.inner.lock() {
            i.log.push(r);
        }
        self.changed.notify_waiters();
    }

    /// Ends the stream (once what was pushed is read).
    pub fn finish(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.done = true;
        }
        self.changed.notify_waiters();
    }

    /// Entry `n` onwards; `None` once the build is done and everything was read.
    pub async fn next(&self, n: usize) -> Option<Vec<StatusResponse>> {
        loop {
            let notified = self.changed.notified();
            {
                let i = self.inner.lock().ok()?;
                if i.log.len() > n {
                    return Some(i.log[n..].to_vec());
                }
                if i.done {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// A vertex state change.
    pub fn vertex(&self, id: &str, name: &str, state: &VertexState) {
        let v = {
            let Ok(mut i) = self.inner.lock() else {
                return;
            };
            let v = i.vertexes.entry(id.to_string()).or_insert_with(|| Vertex {
                digest: id.to_string(),
                name: name.to_string(),
                ..Default::default()
            });
            let t = now();
            match state {
                VertexState::Started => v.started = Some(t),
                VertexState::Cached => {
                    v.cached = true;
                    v.started.get_or_insert(t);
                    v.completed = Some(t);
                }
                VertexState::Done => {
                    v.started.get_or_insert(t);
                    v.completed = Some(t);
                }
                VertexState::Failed(e) => {
                    v.started.get_or_insert(t);
                    v.completed = Some(t);
                    v.error = e.clone();
                }
            }
            v.clone()
        };
        self.push(StatusResponse {
            vertexes: vec![v],
            ..Default::default()
        });
    }

    /// A progress line of a vertex (`transferring context: 2.1kB`, `naming to …`).
    pub fn status(&self, vertex: &str, id: &str, current: i64, total: i64, done: bool) {
        let t = now();
        self.push(StatusResponse {
            statuses: vec![VertexStatus {
                id: id.to_string(),
                vertex: vertex.to_string(),
                current,
                total,
                timestamp: Some(t),
                started: Some(t),
                completed: done.then_some(t),
                ..Default::default()
            }],
            ..Default::default()
        });
    }

    pub fn log(&self, vertex: &str, stream: u8, data: &[u8]) {
        self.push(StatusResponse {
            logs: vec![VertexLog {
                vertex: vertex.to_string(),
                timestamp: Some(now()),
                stream: stream as i64,
                msg: data.to_vec(),
            }],
            ..Default::default()
        });
    }

    pub fn warnings(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|i| i.warnings.clone())
            .unwrap_or_default()
    }
}

impl Progress for StatusLog {
    fn vertex(&self, v: &berth_build::builder::Vertex) {
        StatusLog::vertex(self, &v.id, &v.name, &v.state);
    }
    fn output(&self, vertex: &str, stream: u8, data: &[u8]) {
        if !vertex.is_empty() {
            self.log(vertex, stream, data);
        }
    }
    fn warning(&self, msg: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.warnings.push(msg.to_string());
        }
    }
}

/// A vertex of the front end's own (`[internal] load build context`, `exporting to image`).
pub struct Step<'a> {
    log: &'a StatusLog,
    pub id: String,
    name: String,
    finished: bool,
}

impl<'a> Step<'a> {
    pub fn start(log: &'a StatusLog, build: &str, name: &str) -> Self {
        let id = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                format!("{build}\n{name}").as_bytes()
            ))
        );
        log.vertex(&id, name, &VertexState::Started);
        Step {
            log,
            id,
            name: name.to_string(),
            finished: false,
        }
    }

    pub fn done(mut self) {
        self.finished = true;
        self.log.vertex(&self.id, &self.name, &VertexState::Done);
    }

    pub fn fail(mut self, e: &str) {
        self.finished = true;
        self.log
            .vertex(&self.id, &self.name, &VertexState::Failed(e.to_string()));
    }

    pub fn status(&self, id: &str, current: i64, total: i64, done: bool) {
        self.log.status(&self.id, id, current, total, done);
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.log.vertex(
                &self.id,
                &self.name,
                &VertexState::Failed("cancelled".into()),
            );
        }
    }
}
