//! BuildKit's API, served with Berth's own builder: what `docker build` with the buildx
//! plugin (its `docker` driver) and other BuildKit clients talk to.
//!
//! - `POST /grpc` (hijacked, h2c): the `moby.buildkit.v1.Control` service (Solve, Status,
//!   Info, ListWorkers, DiskUsage, Prune) and the gateway's `LLBBridge` (Ping, Solve,
//!   Return, Evaluate) that buildx's frontend function calls ([`control`]).
//! - `POST /session` (hijacked, h2c): the client serves its attachables and Berth is their
//!   gRPC client: files (fsutil's DiffCopy, [`filesync`]), secrets, ssh agents, registry
//!   logins, export targets ([`session`]).
//! - The `dockerfile.v0` frontend ([`frontend`]) runs `berth-build`'s builder through the
//!   engine ([`BuildHost`]); the exporters ([`export`]) store, send or tar the result.
//!
//! The gRPC code is generated at build time from `proto/` (BuildKit v0.24.0 and fsutil
//! 586307ad452f wire definitions, trimmed to what is used) with protoc.

// tonic's `Status` is the services' error type (their interface): its size is not ours to pick.
#![allow(clippy::result_large_err)]

mod control;
mod export;
pub mod filesync;
mod frontend;
pub mod session;
mod solve;
mod status;
pub mod transport;

use berth_build::builder::BuildError;
use berth_build::host::{BuildHost, CacheRecord, PruneOptions};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

pub use session::SessionHeaders;
pub mod pb {
    pub mod moby {
        pub mod buildkit {
            pub mod v1 {
                tonic::include_proto!("moby.buildkit.v1");
                pub mod types {
                    tonic::include_proto!("moby.buildkit.v1.types");
                }
                pub mod apicaps {
                    tonic::include_proto!("moby.buildkit.v1.apicaps");
                }
                pub mod frontend {
                    tonic::include_proto!("moby.buildkit.v1.frontend");
                }
            }
            pub mod secrets {
                pub mod v1 {
                    tonic::include_proto!("moby.buildkit.secrets.v1");
                }
            }
        }
        pub mod filesync {
            pub mod v1 {
                tonic::include_proto!("moby.filesync.v1");
            }
        }
        pub mod sshforward {
            pub mod v1 {
                tonic::include_proto!("moby.sshforward.v1");
            }
        }
        pub mod upload {
            pub mod v1 {
                tonic::include_proto!("moby.upload.v1");
            }
        }
    }
    // BuildKit's LLB package is called `pb`.
    #[allow(clippy::module_inception)]
    pub mod pb {
        tonic::include_proto!("pb");
    }
    pub mod fsutil {
        pub mod types {
            tonic::include_proto!("fsutil.types");
        }
    }
    pub mod google {
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}

/// BuildKit's front end: the builds in flight and the attached sessions.
pub struct BuildKit {
    host: Arc<dyn BuildHost>,
    sessions: session::Sessions,
    builds: Arc<solve::Builds>,
}

impl BuildKit {
    pub fn new(host: Arc<dyn BuildHost>) -> Arc<BuildKit> {
        Arc::new(BuildKit {
            host,
            sessions: session::Sessions::default(),
            builds: Arc::new(solve::Builds::default()),
        })
    }

    /// Serves the control and gateway services on a hijacked `/grpc` connection until the
    /// client closes it.
    pub async fn serve_grpc<IO>(self: Arc<Self>, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        use pb::moby::buildkit::v1::control_server::ControlServer;
        use pb::moby::buildkit::v1::frontend::llb_bridge_server::LlbBridgeServer;
        let max = 64 << 20;
        let routes = tonic::service::Routes::new(
            ControlServer::new(control::ControlService(self.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            LlbBridgeServer::new(control::BridgeService(self.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .prepare();
        transport::serve(io, routes).await;
    }

    /// Attaches a client session from a hijacked `/session` connection; returns when it
    /// closes.
    pub async fn attach_session<IO>(self: Arc<Self>, io: IO, headers: SessionHeaders)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match transport::H2Channel::connect(io).await {
            Ok((channel, closed)) => self.sessions.attach(headers, channel, closed).await,
            Err(e) => tracing::debug!("session {}: {e}", headers.id),
        }
    }

    async fn host_config(&self, image: &str) -> Result<Vec<u8>, BuildError> {
        let host = self.host.clone();
        let image = image.to_string();
        tokio::task::spawn_blocking(move || host.image_config(&image))
            .await
            .map_err(|e| BuildError::Failed(e.to_string()))?
    }

    /// Runs a control `Solve`: the frontend (or the gateway client's returned result), then
    /// the exporters. Returns the exporter response.
    async fn solve(
        self: &Arc<Self>,
        job: &Arc<solve::Job>,
        r: pb::moby::buildkit::v1::SolveRequest,
    ) -> Result<HashMap<String, String>, BuildError> {
        let mut exporters: Vec<(String, HashMap<String, String>)> = r
            .exporters
            .iter()
            .map(|e| (e.r#type.clone(), e.attrs.clone()))
            .collect();
        if exporters.is_empty() && !r.exporter_deprecated.is_empty() {
            exporters.push((
                r.exporter_deprecated.clone(),
                r.exporter_attrs_deprecated.clone(),
            ));
        }
        for (t, _) in &exporters {
            export::check(t)?;
        }
        if r.definition.as_ref().is_some_and(|d| !d.def.is_empty()) {
            return Err(BuildError::BadRequest(
                "LLB definitions are not supported: this builder runs Dockerfiles (the dockerfile.v0 frontend)".into(),
            ));
        }
        let session = self.sessions.get(&r.session).await;
        let image = if !r.frontend.is_empty() {
            if !frontend::is_dockerfile(&r.frontend, &r.frontend_attrs) {
                return Err(control::unsupported_frontend(
                    &r.frontend,
                    &r.frontend_attrs,
                ));
            }
            let id = frontend::run(
                self,
                &job.id,
                &job.status,
                session.clone(),
                &r.frontend_attrs,
                &r.entitlements,
                job.cancel.clone(),
            )
            .await?;
            Some(id)
        } else {
            match job.returned().await {
                solve::Returned::Image(id) => Some(id),
                solve::Returned::Empty => None,
                solve::Returned::Error(m) => return Err(BuildError::Failed(m)),
            }
        };
        let mut resp = HashMap::new();
        if let Some(image) = image {
            for (i, (t, attrs)) in exporters.iter().enumerate() {
                export::run(
                    self,
                    job,
                    session.as_deref(),
                    i,
                    t,
                    attrs,
                    &image,
                    &mut resp,
                )
                .await?;
            }
        }
        for w in job.status.warnings() {
            tracing::debug!("build {}: {w}", job.id);
        }
        Ok(resp)
    }

    /// The build cache as `buildx du` lists it: the host's records and received contexts.
    fn cache_usage(&self) -> Vec<CacheRecord> {
        let mut v = self.host.cache_usage();
        v.extend(export::context_records(&self.host.state_dir()));
        v
    }

    fn cache_prune(&self, opts: &PruneOptions) -> Vec<CacheRecord> {
        let mut v = self.host.cache_prune(opts);
        v.extend(export::prune_contexts(&self.host.state_dir(), opts));
        v
    }
}
