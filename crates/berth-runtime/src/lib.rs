//! berth-runtime: OCI runtime spec generation with Docker's security defaults, and the
//! per-container shim (`berth shim`) that runs one container with youki's `libcontainer`.

pub mod cgroup;
mod error;
pub mod exec;
pub mod infra;
pub mod limits;
pub mod portd;
pub mod rootless;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod shim;
pub mod spec;
pub mod spec_extras;
mod user;

pub use error::{RuntimeError, StartFault};
pub use shim::{ExitStatus, ShimOptions, ShimStarted};
pub use spec::{
    build_spec, resolve_executable, CgroupNs, ContainerRunConfig, Isolation, Namespace,
    NetworkMode, Shm,
};
