//! Generates the gRPC types and services from `proto/` (BuildKit's and fsutil's wire
//! definitions, trimmed; see proto/README.md) with protoc, which Debian's
//! `protobuf-compiler` package provides (`PROTOC` names another one).
fn main() {
    let files = [
        "github.com/moby/buildkit/api/services/control/control.proto",
        "github.com/moby/buildkit/frontend/gateway/pb/gateway.proto",
        "github.com/moby/buildkit/session/filesync/filesync.proto",
        "github.com/moby/buildkit/session/auth/auth.proto",
        "github.com/moby/buildkit/session/secrets/secrets.proto",
        "github.com/moby/buildkit/session/sshforward/ssh.proto",
        "github.com/moby/buildkit/session/upload/upload.proto",
    ];
    let paths: Vec<String> = files.iter().map(|f| format!("proto/{f}")).collect();
    println!("cargo:rerun-if-changed=proto");
    if let Err(e) = tonic_build::configure()
        .build_transport(false)
        .compile_protos(&paths, &["proto".to_string()])
    {
        panic!(
            "berth-buildkit: generating gRPC code with protoc failed: {e}\n\
             (install protoc: apt-get install protobuf-compiler, or set PROTOC)"
        );
    }
}
