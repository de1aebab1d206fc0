//! What a build reports as it goes. One builder serves two protocols: the legacy JSON stream
//! (`Step 1/5 : …`, ` ---> …` lines) and BuildKit's status stream (vertexes named
//! `[2/3] RUN …`, cached/started/completed, with their logs). The builder reports both kinds
//! of event; each front end's [`Progress`] keeps the kind it renders.

use super::Output;

/// The state of a step as BuildKit shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VertexState {
    Started,
    /// Taken from the build cache (`CACHED`).
    Cached,
    Done,
    Failed(String),
}

/// One BuildKit vertex event: `id` is stable for the vertex (a digest-shaped string).
#[derive(Clone, Debug)]
pub struct Vertex {
    pub id: String,
    pub name: String,
    pub state: VertexState,
}

/// The sink of a build's progress; shared by a build's stages, which may run at once.
pub trait Progress: Sync {
    /// Legacy builder text (a `stream` message of `POST /build`).
    fn text(&self, _s: &str) {}
    /// The legacy stream's `aux` message: the built image's id.
    fn aux(&self, _id: &str) {}
    /// A vertex started, was taken from the cache, finished or failed.
    fn vertex(&self, _v: &Vertex) {}
    /// Output of a step's process: `stream` 1 is stdout, 2 stderr. `vertex` is the step's
    /// vertex id (empty outside a step).
    fn output(&self, _vertex: &str, _stream: u8, _data: &[u8]) {}
    /// A warning (BuildKit shows them after the build; the legacy stream inline).
    fn warning(&self, _msg: &str) {}
}

/// The legacy JSON stream: text and RUN output as `stream` messages (a RUN step's stderr
/// wrapped in red, one message per write, as the classic builder does), the id as `aux`.
pub struct LegacyProgress<'a> {
    pub out: &'a (dyn Fn(Output) + Sync),
    pub quiet: bool,
}

impl Progress for LegacyProgress<'_> {
    fn text(&self, s: &str) {
        if !self.quiet {
            (self.out)(Output::Stream(s.to_string()));
        }
    }
    fn aux(&self, id: &str) {
        (self.out)(Output::Aux(id.to_string()));
        if self.quiet {
            // Quiet: the stream carries just the id (the docker CLI prints it as is).
            (self.out)(Output::Stream(format!("{id}\n")));
        }
    }
    fn output(&self, _vertex: &str, stream: u8, data: &[u8]) {
        if self.quiet {
            return;
        }
        let s = String::from_utf8_lossy(data);
        (self.out)(Output::Stream(if stream == 2 {
            format!("\x1b[91m{s}\x1b[0m")
        } else {
            s.into_owned()
        }));
    }
    fn warning(&self, msg: &str) {
        self.text(&format!("{msg}\n"));
    }
}
