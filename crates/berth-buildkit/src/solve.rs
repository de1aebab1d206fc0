//! Builds in flight, by ref: a `Solve` call, its `Status` stream (which may come first), and
//! for clients that run their own frontend function (buildx), the gateway calls that carry
//! the build's ref in their metadata (`buildkit-controlapi-buildid`): the bridge's `Solve`
//! runs the Dockerfile and returns a result ref, `Return` hands the final result back to the
//! waiting control `Solve`, which exports it.

use crate::status::StatusLog;
use berth_build::builder::BuildError;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a finished build stays, for a late `Status` call.
const LINGER: Duration = Duration::from_secs(30);

/// What the control `Solve` told about a build: the gateway calls need its session and
/// entitlements.
#[derive(Clone, Debug, Default)]
pub struct SolveParams {
    pub session: String,
    pub entitlements: Vec<String>,
}

/// The result a gateway client returned.
#[derive(Clone, Debug)]
pub enum Returned {
    /// A result ref's image id.
    Image(String),
    /// No result (an internal build asking for capabilities).
    Empty,
    Error(String),
}

pub struct Job {
    pub id: String,
    pub status: Arc<StatusLog>,
    pub cancel: Arc<AtomicBool>,
    params: Mutex<Option<SolveParams>>,
    params_set: tokio::sync::Notify,
    /// Images the gateway's solves produced, by result ref id.
    refs: Mutex<HashMap<String, String>>,
    returned: Mutex<Option<Returned>>,
    returned_set: tokio::sync::Notify,
}

impl Job {
    pub fn set_params(&self, p: SolveParams) {
        if let Ok(mut g) = self.params.lock() {
            *g = Some(p);
        }
        self.params_set.notify_waiters();
    }

    /// The control `Solve`'s parameters, waiting for that call (it races the gateway's).
    pub async fn params(&self) -> Result<SolveParams, BuildError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.params_set.notified();
            if let Some(p) = self.params.lock().ok().and_then(|g| g.clone()) {
                return Ok(p);
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return Err(BuildError::BadRequest(
                    "no Solve call for this build reference".into(),
                ));
            }
        }
    }

    pub fn add_ref(&self, id: &str, image: &str) {
        if let Ok(mut m) = self.refs.lock() {
            m.insert(id.to_string(), image.to_string());
        }
    }

    pub fn image_of(&self, ref_id: &str) -> Option<String> {
        self.refs.lock().ok()?.get(ref_id).cloned()
    }

    pub fn set_returned(&self, r: Returned) {
        if let Ok(mut g) = self.returned.lock() {
            *g = Some(r);
        }
        self.returned_set.notify_waiters();
    }

    /// The gateway's `Return`, waiting for it.
    pub async fn returned(&self) -> Returned {
        loop {
            let n = self.returned_set.notified();
            if let Some(r) = self.returned.lock().ok().and_then(|g| g.clone()) {
                return r;
            }
            n.await;
        }
    }
}

#[derive(Default)]
pub struct Builds {
    map: Mutex<HashMap<String, Arc<Job>>>,
}

impl Builds {
    /// The build `id`, created on first mention (`Solve`, `Status` or a gateway call).
    pub fn get(&self, id: &str) -> Arc<Job> {
        let mut m = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Job {
                    id: id.to_string(),
                    status: Arc::new(StatusLog::default()),
                    cancel: Arc::new(AtomicBool::new(false)),
                    params: Mutex::new(None),
                    params_set: tokio::sync::Notify::new(),
                    refs: Mutex::new(HashMap::new()),
                    returned: Mutex::new(None),
                    returned_set: tokio::sync::Notify::new(),
                })
            })
            .clone()
    }

    /// Ends a build: its status stream closes; it is forgotten a little later.
    pub fn finish(self: &Arc<Self>, id: &str) {
        if let Some(j) = self.map.lock().ok().and_then(|m| m.get(id).cloned()) {
            j.status.finish();
        }
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            if let Ok(mut m) = me.map.lock() {
                m.remove(&id);
            }
        });
    }
}
