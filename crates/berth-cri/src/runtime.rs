//! `runtime.v1.RuntimeService`: pods and their containers on the engine, ExecSync, the URLs of
//! the streaming server, stats and the container event stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_engine::container::{ContainerRecord, Status as CStatus};
use berth_engine::pod::PodView;
use berth_engine::{Engine, EngineError};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::UnixStream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::error::{CriError, Result};
use crate::stream::{StreamRequest, StreamServer};

/// What ExecSync keeps of a command's output (containerd's limit).
const MAX_EXEC_OUTPUT: usize = 16 << 20;

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
/// Resizes a session's TTY (height, width).
pub(crate) type ResizeFn = Arc<dyn Fn(u32, u32) -> BoxFuture<()> + Send + Sync>;

/// An attached exec or attach, for the streaming server.
pub(crate) struct Session {
    /// stdcopy frames out (a TTY's output all on stdout), raw stdin in.
    pub io: BufReader<UnixStream>,
    pub resize: Option<ResizeFn>,
    pub exit_code: Box<dyn FnOnce() -> BoxFuture<Option<i64>> + Send>,
}

pub(crate) async fn exec_stream(
    engine: &Engine,
    container_id: &str,
    cmd: &[String],
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<Session> {
    let cfg = berth_api::types::ExecConfig {
        cmd: Some(cmd.to_vec()),
        tty,
        attach_stdin: stdin,
        attach_stdout: stdout,
        attach_stderr: stderr && !tty,
        ..Default::default()
    };
    let id = engine.exec_create(container_id, cfg).await?;
    let st = engine
        .exec_start(&id, false, &None)
        .await?
        .ok_or_else(|| CriError::Engine(EngineError::Internal("exec has no stream".into())))?;
    let (e1, id1) = (engine.clone(), id.clone());
    let (e2, id2) = (engine.clone(), id);
    Ok(Session {
        io: st.io,
        resize: Some(Arc::new(move |h, w| {
            let (e, id) = (e1.clone(), id1.clone());
            Box::pin(async move {
                let _ = e.exec_resize(&id, h, w).await;
            })
        })),
        exit_code: Box::new(move || {
            Box::pin(async move {
                let _ = e2.exec_wait(&id2).await;
                e2.exec_inspect(&id2).ok().and_then(|i| i.exit_code)
            })
        }),
    })
}

pub(crate) async fn attach_stream(
    engine: &Engine,
    container_id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<Session> {
    let rec = engine.container_record(container_id)?;
    if !rec.state.status.is_running() {
        return Err(CriError::Engine(EngineError::Conflict(format!(
            "container {} is not running",
            rec.id
        ))));
    }
    let fut = engine
        .attach(
            &rec.id,
            berth_engine::AttachOptions {
                stdin,
                stdout,
                stderr,
            },
        )
        .await?;
    let st = fut.await?;
    let (e1, id1) = (engine.clone(), rec.id.clone());
    let (e2, id2) = (engine.clone(), rec.id.clone());
    Ok(Session {
        io: st.io,
        resize: Some(Arc::new(move |h, w| {
            let (e, id) = (e1.clone(), id1.clone());
            Box::pin(async move {
                let _ = e.resize(&id, h, w).await;
            })
        })),
        // An attach ends when the output does; the container's own exit is not the client's.
        exit_code: Box::new(move || {
            Box::pin(async move {
                let r = e2.container_record(&id2).ok()?;
                (!r.state.status.is_running()).then_some(0)
            })
        }),
    })
}

pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) streams: Arc<StreamServer>,
    /// Last CPU sample per container (time, usage ns), for `usage_nano_cores`.
    cpu: Mutex<HashMap<String, (i64, u64)>>,
    pod_cidr: Mutex<String>,
}

impl Runtime {
    pub fn new(engine: Engine, streams: Arc<StreamServer>) -> Self {
        Runtime {
            engine,
            streams,
            cpu: Mutex::new(HashMap::new()),
            pod_cidr: Mutex::new(String::new()),
        }
    }

    /// A pod's container by id (or unique prefix).
    fn pod_container(&self, id: &str) -> Result<ContainerRecord> {
        let rec = self.engine.container_record(id)?;
        if rec.pod.is_none() {
            return Err(CriError::Engine(EngineError::NotFound(format!(
                "container {id:?} not found"
            ))));
        }
        Ok(rec)
    }

    fn pod_status(&self, v: &PodView) -> cri::PodSandboxStatus {
        let r = &v.record;
        let mut ips = r.ips.iter();
        cri::PodSandboxStatus {
            id: r.id.clone(),
            metadata: Some(pod_metadata(v)),
            state: pod_state(v) as i32,
            created_at: r.created,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: ips.next().cloned().unwrap_or_default(),
                additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(convert::namespace_option(&r.spec.namespaces)),
                }),
            }),
            labels: convert::hmap(&r.spec.labels),
            annotations: convert::hmap(&r.spec.annotations),
            runtime_handler: r.spec.runtime_handler.clone(),
        }
    }

    fn stats_of(&self, rec: &ContainerRecord) -> cri::ContainerStats {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let attributes = Some(cri::ContainerAttributes {
            id: rec.id.clone(),
            metadata: convert::container_metadata(rec),
            labels: rec
                .pod
                .as_ref()
                .map(|p| convert::hmap(&p.spec.labels))
                .unwrap_or_default(),
            annotations: rec
                .pod
                .as_ref()
                .map(|p| convert::hmap(&p.spec.annotations))
                .unwrap_or_default(),
        });
        let u64v = |value: u64| Some(cri::UInt64Value { value });
        let running = rec.state.status.is_running();
        let sample = match self.engine.cgroup(&rec.id) {
            Some(cg) if running => berth_engine::container::stats::sample(&cg, rec.state.pid),
            _ => serde_json::Value::Null,
        };
        let num = |p: &[&str]| {
            let mut v = &sample;
            for k in p {
                v = &v[*k];
            }
            v.as_u64()
        };
        let cpu_ns = num(&["cpu_stats", "cpu_usage", "total_usage"]).unwrap_or(0);
        let nano_cores = {
            let mut m = self.cpu.lock().unwrap_or_else(|e| e.into_inner());
            let prev = m.insert(rec.id.clone(), (now, cpu_ns));
            prev.and_then(|(t, u)| {
                let dt = now.checked_sub(t).filter(|d| *d > 0)? as u128;
                Some((cpu_ns.saturating_sub(u) as u128 * 1_000_000_000 / dt) as u64)
            })
        };
        let usage = num(&["memory_stats", "usage"]).unwrap_or(0);
        let stat = |v1: &str, v2: &str| {
            num(&["memory_stats", "stats", v1]).or(num(&["memory_stats", "stats", v2]))
        };
        let inactive = stat("total_inactive_file", "inactive_file").unwrap_or(0);
        let working = usage.saturating_sub(inactive);
        let limit = num(&["memory_stats", "limit"]).unwrap_or(0);
        let images = self.engine.images();
        let rw = images.snapshot_size(&rec.id).unwrap_or(0);
        cri::ContainerStats {
            attributes,
            cpu: Some(cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: u64v(cpu_ns),
                usage_nano_cores: nano_cores.and_then(u64v),
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: u64v(working),
                available_bytes: (limit > working).then(|| limit - working).and_then(u64v),
                usage_bytes: u64v(usage),
                rss_bytes: stat("total_rss", "anon").and_then(u64v),
                page_faults: stat("total_pgfault", "pgfault").and_then(u64v),
                major_page_faults: stat("total_pgmajfault", "pgmajfault").and_then(u64v),
            }),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self
                        .engine
                        .config()
                        .data_root
                        .join("image")
                        .display()
                        .to_string(),
                }),
                used_bytes: u64v(rw),
                inodes_used: None,
            }),
            swap: None,
        }
    }

    fn pod_stats(&self, v: &PodView) -> cri::PodSandboxStats {
        let r = &v.record;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let containers: Vec<cri::ContainerStats> = self
            .engine
            .container_records()
            .iter()
            .filter(|c| c.pod.as_ref().is_some_and(|p| p.pod_id == r.id))
            .map(|c| self.stats_of(c))
            .collect();
        let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| -> Option<cri::UInt64Value> {
            Some(cri::UInt64Value {
                value: containers.iter().filter_map(f).sum(),
            })
        };
        let cpu = cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: sum(&|c| {
                c.cpu
                    .as_ref()?
                    .usage_core_nano_seconds
                    .as_ref()
                    .map(|v| v.value)
            }),
            usage_nano_cores: sum(&|c| c.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value)),
        };
        let memory = cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: sum(&|c| {
                c.memory
                    .as_ref()?
                    .working_set_bytes
                    .as_ref()
                    .map(|v| v.value)
            }),
            usage_bytes: sum(&|c| c.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value)),
            rss_bytes: sum(&|c| c.memory.as_ref()?.rss_bytes.as_ref().map(|v| v.value)),
            ..Default::default()
        };
        let process_count: u64 = self
            .engine
            .container_records()
            .iter()
            .filter(|c| c.pod.as_ref().is_some_and(|p| p.pod_id == r.id))
            .filter_map(|c| self.engine.cgroup(&c.id))
            .map(|cg| cg.pids().len() as u64)
            .sum();
        let network = r.netns.as_ref().and_then(|ns| {
            let dev = berth_net::netns::enter(ns, || {
                std::fs::read_to_string("/proc/thread-self/net/dev")
                    .map_err(|e| berth_net::NetError::Other(e.to_string()))
            })
            .ok()?;
            let ifaces = net_dev(&dev);
            Some(cri::NetworkUsage {
                timestamp: now,
                default_interface: ifaces.iter().find(|i| i.name == "eth0").cloned(),
                interfaces: ifaces,
            })
        });
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: r.id.clone(),
                metadata: Some(pod_metadata(v)),
                labels: convert::hmap(&r.spec.labels),
                annotations: convert::hmap(&r.spec.annotations),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cpu),
                memory: Some(memory),
                network,
                process: Some(cri::ProcessUsage {
                    timestamp: now,
                    process_count: Some(cri::UInt64Value {
                        value: process_count,
                    }),
                }),
                containers,
            }),
            windows: None,
        }
    }
}

/// `/proc/net/dev` of a namespace, loopback left out.
fn net_dev(text: &str) -> Vec<cri::NetworkInterfaceUsage> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let v = |i: usize| f.get(i).map(|value| cri::UInt64Value { value: *value });
            Some(cri::NetworkInterfaceUsage {
                name: name.to_string(),
                rx_bytes: v(0),
                rx_errors: v(2),
                tx_bytes: v(8),
                tx_errors: v(10),
            })
        })
        .collect()
}

fn pod_metadata(v: &PodView) -> cri::PodSandboxMetadata {
    let s = &v.record.spec;
    cri::PodSandboxMetadata {
        name: s.name.clone(),
        uid: s.uid.clone(),
        namespace: s.namespace.clone(),
        attempt: s.attempt,
    }
}

fn pod_state(v: &PodView) -> cri::PodSandboxState {
    if v.ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

fn labels_match(
    want: &HashMap<String, String>,
    have: &std::collections::BTreeMap<String, String>,
) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The kubelet and crictl name objects by full id or a unique prefix of one.
fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let r = request.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("no sandbox config"))?;
        let spec = convert::pod_spec(&config, &r.runtime_handler)?;
        let id = self.engine.run_pod(spec).await.map_err(CriError::from)?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.engine.stop_pod(&id).await.map_err(CriError::from)?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        self.engine.remove_pod(&id).await.map_err(CriError::from)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let r = request.into_inner();
        let v = self
            .engine
            .pod_status(&r.pod_sandbox_id)
            .map_err(CriError::from)?;
        let mut info = HashMap::new();
        if r.verbose {
            let rec = &v.record;
            info.insert(
                "info".to_string(),
                serde_json::json!({
                    "pid": rec.infra.map(|i| i.pid),
                    "netns": rec.netns,
                    "cniResult": rec.cni_result,
                    "config": rec.spec,
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(self.pod_status(&v)),
            info,
            containers_statuses: Vec::new(),
            timestamp: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let items = self
            .engine
            .list_pods()
            .iter()
            .filter(|v| id_matches(&f.id, &v.record.id))
            .filter(|v| {
                f.state
                    .as_ref()
                    .is_none_or(|s| s.state == pod_state(v) as i32)
            })
            .filter(|v| labels_match(&f.label_selector, &v.record.spec.labels))
            .map(|v| cri::PodSandbox {
                id: v.record.id.clone(),
                metadata: Some(pod_metadata(v)),
                state: pod_state(v) as i32,
                created_at: v.record.created,
                labels: convert::hmap(&v.record.spec.labels),
                annotations: convert::hmap(&v.record.spec.annotations),
                runtime_handler: v.record.spec.runtime_handler.clone(),
            })
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let r = request.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("no container config"))?;
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Status::invalid_argument("no image given"))?;
        let spec = convert::container_spec(&config, image)?;
        let id = self
            .engine
            .create_pod_container(&r.pod_sandbox_id, spec)
            .await
            .map_err(CriError::from)?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let rec = self.pod_container(&request.into_inner().container_id)?;
        // A pod's container runs once: the kubelet makes a new one to restart.
        if convert::container_state(&rec) != cri::ContainerState::ContainerCreated {
            return Err(Status::failed_precondition(format!(
                "container {} is in {} state",
                rec.id,
                convert::container_state(&rec).as_str_name()
            )));
        }
        self.engine.start(&rec.id).await.map_err(CriError::from)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let r = request.into_inner();
        let rec = match self.pod_container(&r.container_id) {
            Ok(rec) => rec,
            Err(CriError::Engine(EngineError::NotFound(_))) => {
                return Ok(Response::new(cri::StopContainerResponse {}))
            }
            Err(e) => return Err(e.into()),
        };
        match self
            .engine
            .stop(&rec.id, Some(r.timeout.max(0)), None)
            .await
        {
            Ok(()) | Err(EngineError::NotModified) | Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(CriError::from(e).into()),
        }
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let rec = match self.pod_container(&id) {
            Ok(rec) => rec,
            Err(CriError::Engine(EngineError::NotFound(_))) => {
                return Ok(Response::new(cri::RemoveContainerResponse {}))
            }
            Err(e) => return Err(e.into()),
        };
        match self.engine.remove(&rec.id, true, false).await {
            Ok(()) | Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(CriError::from(e).into()),
        }
        self.cpu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&rec.id);
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let mut containers: Vec<cri::Container> = self
            .engine
            .container_records()
            .iter()
            .filter_map(convert::container)
            .filter(|c| id_matches(&f.id, &c.id))
            .filter(|c| id_matches(&f.pod_sandbox_id, &c.pod_sandbox_id))
            .filter(|c| f.state.as_ref().is_none_or(|s| s.state == c.state))
            .filter(|c| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| c.labels.get(k) == Some(v))
            })
            .collect();
        containers.sort_by_key(|c| c.created_at);
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let r = request.into_inner();
        let rec = self.pod_container(&r.container_id)?;
        let mut info = HashMap::new();
        if r.verbose {
            info.insert(
                "info".to_string(),
                serde_json::json!({
                    "sandboxID": rec.pod.as_ref().map(|p| &p.pod_id),
                    "pid": rec.state.pid,
                    "config": rec.pod.as_ref().map(|p| &p.spec),
                    "runtimeType": "berth",
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::ContainerStatusResponse {
            status: convert::container_status(&rec, self.engine.pod_container_user(&rec.id)),
            info,
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let r = request.into_inner();
        let rec = self.pod_container(&r.container_id)?;
        let res = convert::resources(r.linux.as_ref());
        self.engine
            .update_pod_container_resources(&rec.id, res)
            .await
            .map_err(CriError::from)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let rec = self.pod_container(&request.into_inner().container_id)?;
        self.engine
            .reopen_container_log(&rec.id)
            .await
            .map_err(CriError::from)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let r = request.into_inner();
        let rec = self.pod_container(&r.container_id)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("no command given"));
        }
        let cfg = berth_api::types::ExecConfig {
            cmd: Some(r.cmd.clone()),
            attach_stdout: true,
            attach_stderr: true,
            ..Default::default()
        };
        let exec_id = self
            .engine
            .exec_create(&rec.id, cfg)
            .await
            .map_err(CriError::from)?;
        let st = self
            .engine
            .exec_start(&exec_id, false, &None)
            .await
            .map_err(CriError::from)?
            .ok_or_else(|| Status::unknown("exec has no output stream"))?;
        let mut io = st.io;
        let collect = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut demux = berth_api::stdcopy::Demuxer::new();
            let mut buf = vec![0u8; 32 << 10];
            loop {
                let n = match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                demux.push(&buf[..n]);
                while let Ok(Some((kind, data))) = demux.next_frame() {
                    let target = match kind {
                        berth_api::stdcopy::StreamKind::Stderr => &mut err,
                        _ => &mut out,
                    };
                    let room = MAX_EXEC_OUTPUT.saturating_sub(target.len());
                    target.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            (out, err)
        };
        let (stdout, stderr) = if r.timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(r.timeout as u64), collect).await {
                Ok(x) => x,
                Err(_) => {
                    // Time is up: the command goes, and the caller hears so.
                    let _ = self.engine.exec_kill(&exec_id, 9).await;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        self.engine.exec_wait(&exec_id),
                    )
                    .await;
                    return Err(CriError::DeadlineExceeded(format!(
                        "command {:?} timed out after {}s",
                        r.cmd, r.timeout
                    ))
                    .into());
                }
            }
        } else {
            collect.await
        };
        let _ = self.engine.exec_wait(&exec_id).await;
        let code = self
            .engine
            .exec_inspect(&exec_id)
            .ok()
            .and_then(|i| i.exit_code)
            .unwrap_or(-1);
        Ok(Response::new(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: code as i32,
        }))
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let r = request.into_inner();
        let rec = self.pod_container(&r.container_id)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("no command given"));
        }
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout, or stderr must be set",
            ));
        }
        if r.tty && r.stderr {
            return Err(Status::invalid_argument(
                "tty and stderr cannot both be true",
            ));
        }
        if rec.state.status != CStatus::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let url = self.streams.register(StreamRequest::Exec {
            container_id: rec.id,
            cmd: r.cmd,
            tty: r.tty,
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
        });
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let r = request.into_inner();
        let rec = self.pod_container(&r.container_id)?;
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout, or stderr must be set",
            ));
        }
        if rec.state.status != CStatus::Running {
            return Err(Status::failed_precondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let tty = rec.config.tty;
        let url = self.streams.register(StreamRequest::Attach {
            container_id: rec.id,
            tty,
            stdin: r.stdin && rec.config.open_stdin,
            stdout: r.stdout,
            stderr: r.stderr && !tty,
        });
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let r = request.into_inner();
        let v = self
            .engine
            .pod_status(&r.pod_sandbox_id)
            .map_err(CriError::from)?;
        if !v.ready {
            return Err(Status::failed_precondition(format!(
                "pod sandbox {} is not ready",
                v.record.id
            )));
        }
        let url = self.streams.register(StreamRequest::PortForward {
            pod_id: v.record.id,
        });
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let rec = self.pod_container(&request.into_inner().container_id)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(self.stats_of(&rec)),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let stats = self
            .engine
            .container_records()
            .iter()
            .filter(|c| {
                let Some(p) = &c.pod else { return false };
                id_matches(&f.id, &c.id)
                    && id_matches(&f.pod_sandbox_id, &p.pod_id)
                    && labels_match(&f.label_selector, &p.spec.labels)
            })
            .map(|c| self.stats_of(c))
            .collect();
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let v = self
            .engine
            .pod_status(&request.into_inner().pod_sandbox_id)
            .map_err(CriError::from)?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(self.pod_stats(&v)),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let stats = self
            .engine
            .list_pods()
            .iter()
            .filter(|v| v.ready)
            .filter(|v| id_matches(&f.id, &v.record.id))
            .filter(|v| labels_match(&f.label_selector, &v.record.spec.labels))
            .map(|v| self.pod_stats(v))
            .collect();
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!("cri: pod CIDR is now {cidr}");
            *self.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = cidr;
        }
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let net = self.engine.pod_network_config();
        let mut conditions = vec![cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        }];
        conditions.push(match &net {
            Ok(_) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!("Network plugin returns error: {e}"),
            },
        });
        let mut info = HashMap::new();
        if request.into_inner().verbose {
            let cfg = self.engine.config();
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "rootDir": cfg.data_root,
                    "stateDir": cfg.exec_root,
                    "cni": {
                        "confDir": cfg.cni.conf_dir,
                        "binDirs": cfg.cni.bin_dirs,
                        "network": net.as_ref().ok().map(|n| &n.name),
                    },
                    "podCIDR": *self.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()),
                    "streamServer": self.streams.addr().to_string(),
                })
                .to_string(),
            );
        }
        let features = Some(cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: true,
            user_namespaces: false,
        });
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![cri::RuntimeHandler {
                name: String::new(),
                features,
            }],
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented(
            "checkpointing containers is not supported",
        ))
    }

    type GetContainerEventsStream = Pin<
        Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>,
    >;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let (_, mut rx) = self.engine.events().subscribe();
        let engine = self.engine.clone();
        let (tx, out) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if ev.typ != "container" {
                    continue;
                }
                let kind = match ev.action.as_str() {
                    "create" => cri::ContainerEventType::ContainerCreatedEvent,
                    "start" => cri::ContainerEventType::ContainerStartedEvent,
                    "die" => cri::ContainerEventType::ContainerStoppedEvent,
                    "destroy" => cri::ContainerEventType::ContainerDeletedEvent,
                    _ => continue,
                };
                let pod_id = match ev.actor.attributes.get(berth_engine::pod::POD_LABEL) {
                    Some(p) => p.clone(),
                    None => continue,
                };
                let status = engine.container_record(&ev.actor.id).ok().and_then(|r| {
                    let user = engine.pod_container_user(&r.id);
                    convert::container_status(&r, user)
                });
                let pod = engine.pod_status(&pod_id).ok().map(|v| {
                    let r = &v.record;
                    let mut ips = r.ips.iter();
                    cri::PodSandboxStatus {
                        id: r.id.clone(),
                        metadata: Some(pod_metadata(&v)),
                        state: pod_state(&v) as i32,
                        created_at: r.created,
                        network: Some(cri::PodSandboxNetworkStatus {
                            ip: ips.next().cloned().unwrap_or_default(),
                            additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
                        }),
                        linux: None,
                        labels: convert::hmap(&r.spec.labels),
                        annotations: convert::hmap(&r.spec.annotations),
                        runtime_handler: r.spec.runtime_handler.clone(),
                    }
                });
                let resp = cri::ContainerEventResponse {
                    container_id: ev.actor.id.clone(),
                    container_event_type: kind as i32,
                    created_at: ev.time_nano,
                    pod_sandbox_status: pod,
                    containers_statuses: status.into_iter().collect(),
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: Vec::new(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: Vec::new(),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parsing() {
        let t = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    3    0    0     0          0         0     4000      40    5    0    0     0       0          0\n";
        let v = net_dev(t);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "eth0");
        assert_eq!(v[0].rx_bytes.as_ref().unwrap().value, 2000);
        assert_eq!(v[0].rx_errors.as_ref().unwrap().value, 3);
        assert_eq!(v[0].tx_bytes.as_ref().unwrap().value, 4000);
        assert_eq!(v[0].tx_errors.as_ref().unwrap().value, 5);
    }

    #[test]
    fn prefixes() {
        assert!(id_matches("", "abc"));
        assert!(id_matches("ab", "abc"));
        assert!(!id_matches("b", "abc"));
    }
}
