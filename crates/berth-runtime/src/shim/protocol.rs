//! The shim protocol, written once for both sides: the daemon sends a [`ShimRequest`] line on
//! `shim.sock` and reads a [`ShimReply`] (or, for `wait`, an [`ExitStatus`]; for `state`, a
//! [`ShimState`]). A failed request carries a [`ShimErrorKind`] so the daemon maps it to Docker's
//! status without reading the message. The wire form is the JSON it always was
//! (`{"op":"kill","signal":9}` → `{"ok":false,"error":"..","kind":"not_running"}`); a reply
//! without `kind` (a shim started by an older daemon) reads as `Internal`.

use serde::{Deserialize, Serialize};

pub use super::ExitStatus;
pub use crate::StartFault;

fn default_signal() -> i64 {
    15
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ShimRequest {
    /// Run the created container's process.
    Start,
    /// Stream output (stdcopy frames) and take stdin after the reply.
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
    },
    /// Answered with the [`ExitStatus`] once the process exited.
    Wait,
    Kill {
        #[serde(default = "default_signal")]
        signal: i64,
    },
    Resize {
        #[serde(default)]
        height: u64,
        #[serde(default)]
        width: u64,
    },
    /// Answered with a [`ShimState`].
    State,
    /// Open the log file again (the kubelet rotates CRI logs by renaming them, then asks).
    ReopenLog,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShimErrorKind {
    /// Anything else: a failure of the shim or the kernel.
    #[default]
    Internal,
    /// The request line was not a request.
    InvalidRequest,
    /// The process has exited (kill, start of an exited container).
    NotRunning,
    /// `start` of a running container.
    AlreadyRunning,
    InvalidSignal,
    /// `resize` without a TTY.
    NoTty,
    /// The OCI runtime could not start the process.
    StartFailed,
    /// `reopen_log` of a container that logs to no file.
    NoLog,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShimReply {
    #[serde(default)]
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ShimErrorKind>,
    /// With `StartFailed`: what the failure means to a client (127, 126, internal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<StartFault>,
}

/// A failed request as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimFailure {
    pub kind: ShimErrorKind,
    pub fault: StartFault,
    pub message: String,
}

impl ShimReply {
    pub fn ok() -> Self {
        ShimReply {
            ok: true,
            ..Default::default()
        }
    }

    pub fn err(kind: ShimErrorKind, msg: impl Into<String>) -> Self {
        ShimReply {
            ok: false,
            error: Some(msg.into()),
            kind: Some(kind),
            fault: None,
        }
    }

    /// `start` failed in the OCI runtime, typed as `fault`.
    pub fn start_failed(fault: StartFault, msg: impl Into<String>) -> Self {
        ShimReply {
            fault: Some(fault),
            ..ShimReply::err(ShimErrorKind::StartFailed, msg)
        }
    }

    /// `Ok(())`, or the failure's kind, fault and message.
    pub fn into_result(self) -> Result<(), ShimFailure> {
        if self.ok {
            Ok(())
        } else {
            Err(ShimFailure {
                kind: self.kind.unwrap_or_default(),
                fault: self.fault.unwrap_or_default(),
                message: self.error.unwrap_or_else(|| "shim request failed".into()),
            })
        }
    }
}

/// The process's state as the shim sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessStatus {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    pub pid: i32,
    pub status: ProcessStatus,
    pub exit_code: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_the_old_json() {
        let k = ShimRequest::Kill { signal: 9 };
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"op":"kill","signal":9}"#
        );
        let a: ShimRequest =
            serde_json::from_str(r#"{"op":"attach","stdin":false,"stdout":true,"stderr":true}"#)
                .unwrap();
        assert_eq!(
            a,
            ShimRequest::Attach {
                stdin: false,
                stdout: true,
                stderr: true
            }
        );
        assert_eq!(
            serde_json::from_str::<ShimRequest>(r#"{"op":"kill"}"#).unwrap(),
            ShimRequest::Kill { signal: 15 }
        );
        assert!(serde_json::from_str::<ShimRequest>(r#"{"op":"nope"}"#).is_err());
        // A reply of an older shim, without a kind.
        let r: ShimReply = serde_json::from_str(r#"{"ok":false,"error":"x"}"#).unwrap();
        assert_eq!(
            r.into_result(),
            Err(ShimFailure {
                kind: ShimErrorKind::Internal,
                fault: StartFault::Internal,
                message: "x".into()
            })
        );
        let r = ShimReply::start_failed(StartFault::NotFound, "gone");
        let wire = serde_json::to_string(&r).unwrap();
        assert_eq!(
            wire,
            r#"{"ok":false,"error":"gone","kind":"start_failed","fault":"not_found"}"#
        );
        let back: ShimReply = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.into_result().unwrap_err().fault, StartFault::NotFound);
        let r = ShimReply::err(ShimErrorKind::NotRunning, "container x is not running");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"ok":false,"error":"container x is not running","kind":"not_running"}"#
        );
        assert_eq!(
            serde_json::to_string(&ShimReply::ok()).unwrap(),
            r#"{"ok":true}"#
        );
    }
}
