//! The gRPC services on `/grpc`: BuildKit's `Control` (Solve, Status, Info, ListWorkers,
//! DiskUsage, Prune) and the gateway's `LLBBridge` (Ping, Solve, Return, Evaluate).

use crate::pb::moby::buildkit::v1 as cpb;
use crate::pb::moby::buildkit::v1::apicaps::ApiCap;
use crate::pb::moby::buildkit::v1::frontend as gpb;
use crate::pb::moby::buildkit::v1::types::{BuildkitVersion, WorkerRecord};
use crate::pb::pb::Platform;
use crate::solve::{Job, Returned, SolveParams};
use crate::BuildKit;
use berth_build::builder::BuildError;
use berth_build::host::{CacheRecord, PruneOptions};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A build error as the client shows it (after its own "failed to solve: ").
pub fn to_status(e: BuildError) -> Status {
    let m = e.buildkit_message();
    match e {
        BuildError::BadRequest(_) => Status::invalid_argument(m),
        BuildError::NotFound(_) => Status::not_found(m),
        BuildError::Cancelled => Status::cancelled(m),
        BuildError::RunFailed { .. } | BuildError::Failed(_) => Status::unknown(m),
    }
}

/// Sets a build's cancel flag if the call handling it goes away before it ends (the client
/// cancelled: Ctrl-C in buildx).
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Relaxed);
        }
    }
}

pub struct ControlService(pub Arc<BuildKit>);
pub struct BridgeService(pub Arc<BuildKit>);

fn timestamp(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn usage_record(r: &CacheRecord) -> cpb::UsageRecord {
    cpb::UsageRecord {
        id: r.id.clone(),
        mutable: r.mutable,
        in_use: r.in_use,
        size: r.size as i64,
        created_at: timestamp(r.created),
        last_used_at: timestamp(r.last_used),
        usage_count: r.usage_count,
        description: r.description.clone(),
        record_type: r.kind.clone(),
        shared: r.shared,
        parents: Vec::new(),
    }
}

/// `type==x`, `type=x`, `id==x`… filters of `du` and `prune`.
fn filter_values(filters: &[String], key: &str) -> Vec<String> {
    filters
        .iter()
        .flat_map(|f| f.split(','))
        .filter_map(|f| {
            let (k, v) = f.split_once("==").or_else(|| f.split_once('='))?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .collect()
}

pub fn worker(bk: &BuildKit) -> WorkerRecord {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    WorkerRecord {
        id: "berth".into(),
        labels: HashMap::from([
            (
                "org.mobyproject.buildkit.worker.executor".into(),
                "berth".into(),
            ),
            ("org.mobyproject.buildkit.worker.hostname".into(), hostname),
            (
                "org.mobyproject.buildkit.worker.network".into(),
                "host".into(),
            ),
        ]),
        platforms: vec![Platform {
            architecture: arch.into(),
            os: "linux".into(),
            ..Default::default()
        }],
        gc_policy: Vec::new(),
        buildkit_version: Some(version(bk)),
    }
}

fn version(bk: &BuildKit) -> BuildkitVersion {
    BuildkitVersion {
        package: "berth".into(),
        version: bk.host.version(),
        revision: String::new(),
    }
}

#[tonic::async_trait]
impl cpb::control_server::Control for ControlService {
    async fn disk_usage(
        &self,
        req: Request<cpb::DiskUsageRequest>,
    ) -> Result<Response<cpb::DiskUsageResponse>, Status> {
        let filters = req.into_inner().filter;
        let bk = self.0.clone();
        let records = tokio::task::spawn_blocking(move || bk.cache_usage())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let types = filter_values(&filters, "type");
        let ids = filter_values(&filters, "id");
        let record = records
            .iter()
            .filter(|r| types.is_empty() || types.contains(&r.kind))
            .filter(|r| ids.is_empty() || ids.iter().any(|i| r.id.starts_with(i.as_str())))
            .map(usage_record)
            .collect();
        Ok(Response::new(cpb::DiskUsageResponse { record }))
    }

    type PruneStream = BoxStream<cpb::UsageRecord>;

    async fn prune(
        &self,
        req: Request<cpb::PruneRequest>,
    ) -> Result<Response<Self::PruneStream>, Status> {
        let r = req.into_inner();
        let opts = PruneOptions {
            all: r.all,
            keep_duration: (r.keep_duration > 0).then_some(r.keep_duration / 1_000_000_000),
            types: filter_values(&r.filter, "type"),
            ids: filter_values(&r.filter, "id"),
        };
        let bk = self.0.clone();
        let gone = tokio::task::spawn_blocking(move || bk.cache_prune(&opts))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let items: Vec<Result<cpb::UsageRecord, Status>> =
            gone.iter().map(|r| Ok(usage_record(r))).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn solve(
        &self,
        req: Request<cpb::SolveRequest>,
    ) -> Result<Response<cpb::SolveResponse>, Status> {
        let r = req.into_inner();
        if r.r#ref.is_empty() {
            return Err(Status::invalid_argument("a build needs a ref"));
        }
        let bk = self.0.clone();
        let job = bk.builds.get(&r.r#ref);
        job.set_params(SolveParams {
            session: r.session.clone(),
            entitlements: r.entitlements.clone(),
        });
        let mut guard = CancelOnDrop {
            flag: job.cancel.clone(),
            armed: true,
        };
        let res = bk.solve(&job, r).await;
        guard.armed = false;
        bk.builds.finish(&job.id);
        res.map(|exporter_response| Response::new(cpb::SolveResponse { exporter_response }))
            .map_err(to_status)
    }

    type StatusStream = BoxStream<cpb::StatusResponse>;

    async fn status(
        &self,
        req: Request<cpb::StatusRequest>,
    ) -> Result<Response<Self::StatusStream>, Status> {
        let job = self.0.builds.get(&req.into_inner().r#ref);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(batch) = job.status.next(n).await {
                n += batch.len();
                for m in batch {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_workers(
        &self,
        _req: Request<cpb::ListWorkersRequest>,
    ) -> Result<Response<cpb::ListWorkersResponse>, Status> {
        Ok(Response::new(cpb::ListWorkersResponse {
            record: vec![worker(&self.0)],
        }))
    }

    async fn info(
        &self,
        _req: Request<cpb::InfoRequest>,
    ) -> Result<Response<cpb::InfoResponse>, Status> {
        Ok(Response::new(cpb::InfoResponse {
            buildkit_version: Some(version(&self.0)),
        }))
    }
}

fn cap(id: &str) -> ApiCap {
    ApiCap {
        id: id.into(),
        enabled: true,
        ..Default::default()
    }
}

/// The build a gateway call belongs to (its metadata names it).
fn build_of(bk: &BuildKit, md: &tonic::metadata::MetadataMap) -> Result<Arc<Job>, Status> {
    let id = md
        .get("buildkit-controlapi-buildid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Status::invalid_argument("no build id in the gateway call"))?;
    Ok(bk.builds.get(id))
}

#[tonic::async_trait]
impl gpb::llb_bridge_server::LlbBridge for BridgeService {
    async fn solve(
        &self,
        req: Request<gpb::SolveRequest>,
    ) -> Result<Response<gpb::SolveResponse>, Status> {
        let bk = self.0.clone();
        let job = build_of(&bk, req.metadata())?;
        let r = req.into_inner();
        if r.definition.as_ref().is_some_and(|d| !d.def.is_empty()) {
            return Err(Status::unimplemented(
                "LLB definitions are not supported: this builder runs Dockerfiles (the dockerfile.v0 frontend)",
            ));
        }
        if r.frontend.is_empty() {
            return Ok(Response::new(gpb::SolveResponse {
                result: Some(gpb::Result::default()),
                ..Default::default()
            }));
        }
        let params = job.params().await.map_err(to_status)?;
        if !crate::frontend::is_dockerfile(&r.frontend, &r.frontend_opt) {
            return Err(to_status(unsupported_frontend(
                &r.frontend,
                &r.frontend_opt,
            )));
        }
        let mut guard = CancelOnDrop {
            flag: job.cancel.clone(),
            armed: true,
        };
        let session = bk.sessions.get(&params.session).await;
        let image = crate::frontend::run(
            &bk,
            &job.id,
            &job.status,
            session,
            &r.frontend_opt,
            &params.entitlements,
            job.cancel.clone(),
        )
        .await;
        guard.armed = false;
        let image = image.map_err(to_status)?;
        let ref_id = format!("berth-{}", image.strip_prefix("sha256:").unwrap_or(&image));
        job.add_ref(&ref_id, &image);
        let mut metadata = HashMap::new();
        if let Ok(cfg) = bk.host_config(&image).await {
            metadata.insert("containerimage.config".to_string(), cfg);
        }
        Ok(Response::new(gpb::SolveResponse {
            r#ref: String::new(),
            result: Some(gpb::Result {
                result: Some(gpb::result::Result::Ref(gpb::Ref {
                    id: ref_id,
                    def: None,
                })),
                metadata,
            }),
        }))
    }

    async fn evaluate(
        &self,
        _req: Request<gpb::EvaluateRequest>,
    ) -> Result<Response<gpb::EvaluateResponse>, Status> {
        // Results are solved when returned: there is nothing left to evaluate.
        Ok(Response::new(gpb::EvaluateResponse {}))
    }

    async fn ping(
        &self,
        _req: Request<gpb::PingRequest>,
    ) -> Result<Response<gpb::PongResponse>, Status> {
        let frontend = [
            "solve.base",
            "solve.inlinereturn",
            "return",
            "returnmap",
            "proto.refarray",
            "frontend.inputs",
            "gateway.solve.evaluate",
            "gateway.evaluate",
        ];
        let llb = [
            "source.image",
            "source.local",
            "source.local.unique",
            "source.local.sessionid",
            "source.local.includepatterns",
            "source.local.followpaths",
            "source.local.excludepatterns",
            "exec.meta.base",
            "exec.mount.bind",
            "exec.mount.cache",
            "exec.mount.cache.sharing",
            "exec.mount.tmpfs",
            "exec.mount.secret",
            "exec.mount.ssh",
            "exporter.multiple",
        ];
        Ok(Response::new(gpb::PongResponse {
            frontend_api_caps: frontend.iter().map(|c| cap(c)).collect(),
            llb_caps: llb.iter().map(|c| cap(c)).collect(),
            workers: vec![worker(&self.0)],
        }))
    }

    async fn r#return(
        &self,
        req: Request<gpb::ReturnRequest>,
    ) -> Result<Response<gpb::ReturnResponse>, Status> {
        let job = build_of(&self.0, req.metadata())?;
        let r = req.into_inner();
        let returned = match (r.error, r.result) {
            (Some(e), _) if e.code != 0 => Returned::Error(e.message),
            (_, Some(res)) => {
                let ref_id = match res.result {
                    Some(gpb::result::Result::Ref(r)) => Some(r.id),
                    Some(gpb::result::Result::RefDeprecated(id)) => Some(id),
                    Some(gpb::result::Result::Refs(m)) => {
                        if m.refs.len() > 1 {
                            return Err(Status::unimplemented(
                                "multi-platform results are not supported by this builder",
                            ));
                        }
                        m.refs.into_values().next().map(|r| r.id)
                    }
                    Some(gpb::result::Result::RefsDeprecated(m)) => m.refs.into_values().next(),
                    None => None,
                }
                .filter(|id| !id.is_empty());
                match ref_id {
                    None => Returned::Empty,
                    Some(id) => match job.image_of(&id) {
                        Some(img) => Returned::Image(img),
                        None => return Err(Status::not_found(format!("no such result ref {id}"))),
                    },
                }
            }
            _ => Returned::Empty,
        };
        job.set_returned(returned);
        Ok(Response::new(gpb::ReturnResponse {}))
    }
}

pub fn unsupported_frontend(frontend: &str, attrs: &HashMap<String, String>) -> BuildError {
    let what = match attrs.get("source") {
        Some(s) if frontend == "gateway.v0" => s.clone(),
        _ => frontend.to_string(),
    };
    BuildError::BadRequest(format!(
        "unsupported frontend {what:?}: this builder only runs its own Dockerfile frontend (dockerfile.v0, docker/dockerfile)"
    ))
}
