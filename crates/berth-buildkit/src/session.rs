//! Client sessions (`POST /session`): the client serves its attachables (files, secrets, ssh
//! agents, registry logins, export targets) over the hijacked connection and Berth calls
//! them. A build names its session by id; the session may attach just after the build
//! starts, so lookups wait a little.

use crate::pb::moby::buildkit::secrets::v1::{secrets_client::SecretsClient, GetSecretRequest};
use crate::pb::moby::filesync::v1::{auth_client::AuthClient, CredentialsRequest};
use crate::pb::moby::sshforward::v1::{
    ssh_client::SshClient, BytesMessage as SshBytes, CheckAgentRequest,
};
use crate::transport::H2Channel;
use berth_build::builder::{BuildError, Credentials};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a build waits for its session to attach.
const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// The origin tonic puts in requests; the session connection ignores it.
pub(crate) const ORIGIN: &str = "http://session";

/// One attached client session.
pub struct Session {
    pub id: String,
    /// `X-Docker-Expose-Session-Sharedkey`: the same for builds of the same context.
    pub shared_key: String,
    /// gRPC methods the client serves, lower-cased (`/moby.filesync.v1.filesync/diffcopy`).
    methods: BTreeSet<String>,
    pub channel: H2Channel,
}

impl Session {
    pub fn supports(&self, method: &str) -> bool {
        self.methods.contains(&method.to_ascii_lowercase())
    }

    pub fn uri(&self) -> http::Uri {
        http::Uri::from_static(ORIGIN)
    }
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
    changed: tokio::sync::Notify,
}

/// The headers a session attaches with.
pub struct SessionHeaders {
    pub id: String,
    pub shared_key: String,
    pub methods: Vec<String>,
}

impl SessionHeaders {
    pub fn from_headers(h: &http::HeaderMap) -> Option<SessionHeaders> {
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
                .unwrap_or_default()
        };
        let id = get("X-Docker-Expose-Session-Uuid");
        if id.is_empty() {
            return None;
        }
        let methods = h
            .get_all("X-Docker-Expose-Session-Grpc-Method")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect();
        Some(SessionHeaders {
            id,
            shared_key: get("X-Docker-Expose-Session-Sharedkey"),
            methods,
        })
    }
}

impl Sessions {
    /// Registers a session until its connection closes.
    pub async fn attach(
        &self,
        h: SessionHeaders,
        channel: H2Channel,
        closed: tokio::sync::oneshot::Receiver<()>,
    ) {
        let s = Arc::new(Session {
            id: h.id.clone(),
            shared_key: h.shared_key,
            methods: h.methods.iter().map(|m| m.to_ascii_lowercase()).collect(),
            channel,
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(h.id.clone(), s);
        }
        self.changed.notify_waiters();
        let _ = closed.await;
        if let Ok(mut m) = self.map.lock() {
            m.remove(&h.id);
        }
    }

    /// The session `id`, waiting for it to attach.
    pub async fn get(&self, id: &str) -> Option<Arc<Session>> {
        if id.is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + ATTACH_WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(s) = self.map.lock().ok().and_then(|m| m.get(id).cloned()) {
                return Some(s);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

fn status_err(what: &str, s: tonic::Status) -> BuildError {
    BuildError::Failed(format!("{what}: {}", s.message()))
}

/// A session as the builder sees it ([`berth_build::builder::Session`]): blocking calls
/// (the builder runs on a blocking thread) made on the runtime.
pub struct BuildSession {
    pub session: Arc<Session>,
    pub rt: tokio::runtime::Handle,
}

impl berth_build::builder::Session for BuildSession {
    fn secret(&self, id: &str) -> Result<Option<Vec<u8>>, BuildError> {
        if !self
            .session
            .supports("/moby.buildkit.secrets.v1.Secrets/GetSecret")
        {
            return Ok(None);
        }
        let mut c = SecretsClient::with_origin(self.session.channel.clone(), self.session.uri());
        let r = self.rt.block_on(c.get_secret(GetSecretRequest {
            id: id.to_string(),
            annotations: HashMap::new(),
        }));
        match r {
            Ok(r) => Ok(Some(r.into_inner().data)),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(status_err(&format!("secret {id}"), s)),
        }
    }

    fn ssh_agent(
        &self,
        id: &str,
        path: &Path,
    ) -> Result<Option<Box<dyn std::any::Any + Send>>, BuildError> {
        if !self.session.supports("/moby.sshforward.v1.SSH/CheckAgent") {
            return Ok(None);
        }
        let mut c = SshClient::with_origin(self.session.channel.clone(), self.session.uri());
        match self
            .rt
            .block_on(c.check_agent(CheckAgentRequest { id: id.to_string() }))
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(None),
            Err(s) => return Err(status_err(&format!("ssh agent {id}"), s)),
        }
        let _guard = self.rt.enter();
        let listener = tokio::net::UnixListener::bind(path)
            .map_err(|e| BuildError::Failed(format!("ssh agent socket: {e}")))?;
        let session = self.session.clone();
        let id = id.to_string();
        let task = self.rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(forward_agent(session.clone(), id.clone(), conn));
            }
        });
        Ok(Some(Box::new(AbortOnDrop(task))))
    }

    fn credentials(&self, host: &str) -> Option<Credentials> {
        if !self.session.supports("/moby.filesync.v1.Auth/Credentials") {
            return None;
        }
        let mut c = AuthClient::with_origin(self.session.channel.clone(), self.session.uri());
        let r = self
            .rt
            .block_on(c.credentials(CredentialsRequest {
                host: host.to_string(),
            }))
            .ok()?
            .into_inner();
        (!r.username.is_empty() || !r.secret.is_empty()).then_some(Credentials {
            username: r.username,
            secret: r.secret,
        })
    }
}

/// Ends a task when dropped (the step's agent socket goes with its guard).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Pipes one agent connection from a RUN step to the client's agent `id`.
async fn forward_agent(session: Arc<Session>, id: String, conn: tokio::net::UnixStream) {
    let (mut rd, mut wr) = conn.into_split();
    let (tx, rx) = tokio::sync::mpsc::channel::<SshBytes>(16);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    if let Ok(v) = id.parse() {
        req.metadata_mut().insert("buildkit.ssh.id", v);
    }
    let mut c = SshClient::with_origin(session.channel.clone(), session.uri());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(SshBytes {
                            data: buf[..n].to_vec(),
                        })
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    if let Ok(resp) = c.forward_agent(req).await {
        let mut inbound = resp.into_inner();
        while let Ok(Some(m)) = inbound.message().await {
            if wr.write_all(&m.data).await.is_err() {
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    reader.abort();
}
