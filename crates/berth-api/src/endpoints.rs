//! Typed wrappers over [`Client`] for the endpoints the CLI uses.

use tokio::io::AsyncRead;

use crate::client::{Body, Client, Hijacked, PendingRequest, Response, Result};
use crate::types::*;

/// Percent-encode a name or id used as a path segment.
pub(crate) fn seg(s: &str) -> String {
    crate::client::encode_query_component(s)
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// `filters` as the API wants it: a JSON object of string lists.
pub fn filters_json(filters: &[(String, String)]) -> String {
    let mut m: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (k, v) in filters {
        m.entry(k.as_str()).or_default().push(v.as_str());
    }
    serde_json::to_string(&m).unwrap_or_else(|_| "{}".into())
}

/// Options of `GET /containers/json`.
#[derive(Debug, Clone, Default)]
pub struct ListContainersOptions {
    pub all: bool,
    pub limit: Option<i64>,
    pub size: bool,
    pub filters: Vec<(String, String)>,
}

/// Options of `POST /containers/{id}/attach`.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Replay the log before streaming (`logs=1`).
    pub logs: bool,
    pub detach_keys: Option<String>,
}

impl Client {
    pub async fn version(&self) -> Result<SystemVersion> {
        self.get_json("/version", &[]).await
    }

    pub async fn info(&self) -> Result<SystemInfo> {
        self.get_json("/info", &[]).await
    }

    pub async fn containers_list(
        &self,
        o: &ListContainersOptions,
    ) -> Result<Vec<ContainerSummary>> {
        let mut q = vec![("all", flag(o.all)), ("size", flag(o.size))];
        if let Some(n) = o.limit {
            q.push(("limit", n.to_string()));
        }
        if !o.filters.is_empty() {
            q.push(("filters", filters_json(&o.filters)));
        }
        self.get_json("/containers/json", &q).await
    }

    pub async fn container_create(
        &self,
        name: Option<&str>,
        platform: Option<&str>,
        body: &ContainerCreateBody,
    ) -> Result<ContainerCreateResponse> {
        let mut q = Vec::new();
        if let Some(n) = name {
            q.push(("name", n.to_string()));
        }
        if let Some(p) = platform {
            q.push(("platform", p.to_string()));
        }
        self.post_json("/containers/create", &q, Body::json(body)?)
            .await
    }

    pub async fn container_inspect(&self, id: &str, size: bool) -> Result<ContainerInspect> {
        self.get_json(
            &format!("/containers/{}/json", seg(id)),
            &[("size", flag(size))],
        )
        .await
    }

    /// Inspect without a fixed schema (for `inspect`, which prints the daemon's JSON as is).
    pub async fn container_inspect_raw(&self, id: &str, size: bool) -> Result<serde_json::Value> {
        self.get_json(
            &format!("/containers/{}/json", seg(id)),
            &[("size", flag(size))],
        )
        .await
    }

    pub async fn container_start(&self, id: &str) -> Result<()> {
        self.post(&format!("/containers/{}/start", seg(id)), &[], Body::Empty)
            .await
    }

    pub async fn container_stop(
        &self,
        id: &str,
        signal: Option<&str>,
        t: Option<i64>,
    ) -> Result<()> {
        self.stop_or_restart("stop", id, signal, t).await
    }

    pub async fn container_restart(
        &self,
        id: &str,
        signal: Option<&str>,
        t: Option<i64>,
    ) -> Result<()> {
        self.stop_or_restart("restart", id, signal, t).await
    }

    /// `stop` and `restart` take the same `signal` and `t` parameters.
    async fn stop_or_restart(
        &self,
        op: &str,
        id: &str,
        signal: Option<&str>,
        t: Option<i64>,
    ) -> Result<()> {
        let mut q = Vec::new();
        if let Some(s) = signal {
            q.push(("signal", s.to_string()));
        }
        if let Some(t) = t {
            q.push(("t", t.to_string()));
        }
        self.post(&format!("/containers/{}/{op}", seg(id)), &q, Body::Empty)
            .await
    }

    pub async fn container_kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let q: Vec<(&str, String)> = signal
            .map(|s| ("signal", s.to_string()))
            .into_iter()
            .collect();
        self.post(&format!("/containers/{}/kill", seg(id)), &q, Body::Empty)
            .await
    }

    pub async fn container_remove(
        &self,
        id: &str,
        force: bool,
        volumes: bool,
        link: bool,
    ) -> Result<()> {
        let q = [
            ("force", flag(force)),
            ("v", flag(volumes)),
            ("link", flag(link)),
        ];
        self.delete(&format!("/containers/{}", seg(id)), &q)
            .await?
            .bytes()
            .await
            .map(|_| ())
    }

    /// Returns once the request is accepted: the response *headers* arrive before the wait ends,
    /// so call [`Response::json`] on the result to wait (this is how `run` arms the wait before
    /// starting the container).
    pub async fn container_wait(&self, id: &str, condition: Option<&str>) -> Result<Response> {
        let q: Vec<(&str, String)> = condition
            .map(|c| ("condition", c.to_string()))
            .into_iter()
            .collect();
        self.request(
            http::Method::POST,
            &format!("/containers/{}/wait", seg(id)),
            &q,
            Body::Empty,
        )
        .await
    }

    /// Register a wait without reading its answer; [`PendingRequest::finish_json`] yields the
    /// [`ContainerWaitResponse`].
    pub async fn container_wait_early(
        &self,
        id: &str,
        condition: Option<&str>,
    ) -> Result<PendingRequest> {
        let q: Vec<(&str, String)> = condition
            .map(|c| ("condition", c.to_string()))
            .into_iter()
            .collect();
        self.send_early("POST", &format!("/containers/{}/wait", seg(id)), &q)
            .await
    }

    pub async fn container_rename(&self, id: &str, name: &str) -> Result<()> {
        self.post(
            &format!("/containers/{}/rename", seg(id)),
            &[("name", name.to_string())],
            Body::Empty,
        )
        .await
    }

    /// `GET /containers/{id}/logs`: a streaming response (multiplexed unless the container has a TTY).
    pub async fn container_logs(&self, id: &str, o: &ContainerLogsQuery) -> Result<Response> {
        let mut q = vec![
            ("follow", flag(o.follow)),
            ("stdout", flag(o.stdout)),
            ("stderr", flag(o.stderr)),
            ("timestamps", flag(o.timestamps)),
        ];
        if let Some(s) = &o.since {
            q.push(("since", s.clone()));
        }
        if let Some(s) = &o.until {
            q.push(("until", s.clone()));
        }
        if let Some(s) = &o.tail {
            q.push(("tail", s.clone()));
        }
        self.request(
            http::Method::GET,
            &format!("/containers/{}/logs", seg(id)),
            &q,
            Body::Empty,
        )
        .await
    }

    pub async fn container_attach(&self, id: &str, o: &AttachOptions) -> Result<Hijacked> {
        let mut q = vec![
            ("stream", "1".to_string()),
            ("stdin", flag(o.stdin)),
            ("stdout", flag(o.stdout)),
            ("stderr", flag(o.stderr)),
        ];
        if o.logs {
            q.push(("logs", "1".into()));
        }
        if let Some(k) = &o.detach_keys {
            q.push(("detachKeys", k.clone()));
        }
        self.hijack(&format!("/containers/{}/attach", seg(id)), &q, None)
            .await
    }

    /// `POST /containers/{id}/resize` (TTY size).
    pub async fn container_resize(&self, id: &str, h: u16, w: u16) -> Result<()> {
        self.post(
            &format!("/containers/{}/resize", seg(id)),
            &[("h", h.to_string()), ("w", w.to_string())],
            Body::Empty,
        )
        .await
    }

    /// `POST /containers/{id}/exec`; returns the exec id.
    pub async fn exec_create(&self, container: &str, cfg: &ExecConfig) -> Result<String> {
        let r: IdResponse = self
            .post_json(
                &format!("/containers/{}/exec", seg(container)),
                &[],
                Body::json(cfg)?,
            )
            .await?;
        Ok(r.id)
    }

    /// `POST /exec/{id}/start` detached.
    pub async fn exec_start_detached(&self, exec_id: &str) -> Result<()> {
        let cfg = ExecStartConfig {
            detach: true,
            ..Default::default()
        };
        self.post(
            &format!("/exec/{}/start", seg(exec_id)),
            &[],
            Body::json(&cfg)?,
        )
        .await
    }

    /// `POST /exec/{id}/start` attached: a hijacked stream.
    pub async fn exec_start_attached(
        &self,
        exec_id: &str,
        cfg: &ExecStartConfig,
    ) -> Result<Hijacked> {
        let body = serde_json::to_vec(cfg)?;
        self.hijack(&format!("/exec/{}/start", seg(exec_id)), &[], Some(body))
            .await
    }

    pub async fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect> {
        self.get_json(&format!("/exec/{}/json", seg(exec_id)), &[])
            .await
    }

    pub async fn exec_resize(&self, exec_id: &str, h: u16, w: u16) -> Result<()> {
        self.post(
            &format!("/exec/{}/resize", seg(exec_id)),
            &[("h", h.to_string()), ("w", w.to_string())],
            Body::Empty,
        )
        .await
    }

    pub async fn images_list(
        &self,
        all: bool,
        digests: bool,
        filters: &[(String, String)],
    ) -> Result<Vec<ImageSummary>> {
        let mut q = vec![("all", flag(all)), ("digests", flag(digests))];
        if !filters.is_empty() {
            q.push(("filters", filters_json(filters)));
        }
        self.get_json("/images/json", &q).await
    }

    pub async fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        self.get_json(&format!("/images/{}/json", seg(name)), &[])
            .await
    }

    pub async fn image_inspect_raw(&self, name: &str) -> Result<serde_json::Value> {
        self.get_json(&format!("/images/{}/json", seg(name)), &[])
            .await
    }

    pub async fn image_history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        self.get_json(&format!("/images/{}/history", seg(name)), &[])
            .await
    }

    pub async fn image_tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<()> {
        let mut q = vec![("repo", repo.to_string())];
        if let Some(t) = tag {
            q.push(("tag", t.to_string()));
        }
        self.post(&format!("/images/{}/tag", seg(name)), &q, Body::Empty)
            .await
    }

    pub async fn image_remove(
        &self,
        name: &str,
        force: bool,
        no_prune: bool,
    ) -> Result<Vec<ImageDeleteItem>> {
        self.delete(
            &format!("/images/{}", seg(name)),
            &[("force", flag(force)), ("noprune", flag(no_prune))],
        )
        .await?
        .json()
        .await
    }

    /// `POST /images/load` with a tar streamed from `reader`; the answer is a JSON-lines stream.
    pub async fn image_load<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        reader: R,
        quiet: bool,
    ) -> Result<Response> {
        self.request(
            http::Method::POST,
            "/images/load",
            &[("quiet", flag(quiet))],
            Body::tar(reader),
        )
        .await
    }

    /// `GET /images/get?names=...`: a tar stream.
    pub async fn image_save(&self, names: &[String]) -> Result<Response> {
        let q: Vec<(&str, String)> = names.iter().map(|n| ("names", n.clone())).collect();
        self.request(http::Method::GET, "/images/get", &q, Body::Empty)
            .await
    }

    /// `POST /images/create?fromSrc=-` with a tar body (import); JSON-lines answer.
    pub async fn image_import<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        reader: R,
        repo: Option<&str>,
        tag: Option<&str>,
        message: Option<&str>,
        changes: &[String],
        platform: Option<&str>,
    ) -> Result<Response> {
        let mut q = vec![("fromSrc", "-".to_string())];
        if let Some(r) = repo {
            q.push(("repo", r.to_string()));
        }
        if let Some(t) = tag {
            q.push(("tag", t.to_string()));
        }
        if let Some(m) = message {
            q.push(("message", m.to_string()));
        }
        for c in changes {
            q.push(("changes", c.clone()));
        }
        if let Some(p) = platform {
            q.push(("platform", p.to_string()));
        }
        self.request(http::Method::POST, "/images/create", &q, Body::tar(reader))
            .await
    }

    /// `POST /images/create?fromImage=...` (pull); JSON-lines answer.
    /// `POST /images/{name}/push`: a stream of JSON progress messages.
    /// `registry_auth` is the `X-Registry-Auth` header value (base64url JSON), if any.
    pub async fn image_push(
        &self,
        image: &str,
        tag: Option<&str>,
        registry_auth: Option<&str>,
    ) -> Result<Response> {
        let q: Vec<(&str, String)> = tag.map(|t| ("tag", t.to_string())).into_iter().collect();
        self.request_with_headers(
            http::Method::POST,
            &format!("/images/{image}/push"),
            &q,
            Body::Empty,
            &auth_header(registry_auth),
        )
        .await
    }

    /// `POST /auth`: checks credentials against a registry; `{"Status", "IdentityToken"}`.
    pub async fn auth(&self, config: &serde_json::Value) -> Result<serde_json::Value> {
        self.post_json("/auth", &[], Body::json(config)?).await
    }

    pub async fn image_pull(
        &self,
        image: &str,
        tag: Option<&str>,
        platform: Option<&str>,
        registry_auth: Option<&str>,
    ) -> Result<Response> {
        let mut q = vec![("fromImage", image.to_string())];
        if let Some(t) = tag {
            q.push(("tag", t.to_string()));
        }
        if let Some(p) = platform {
            q.push(("platform", p.to_string()));
        }
        self.request_with_headers(
            http::Method::POST,
            "/images/create",
            &q,
            Body::Empty,
            &auth_header(registry_auth),
        )
        .await
    }
}

fn auth_header(registry_auth: Option<&str>) -> Vec<(&'static str, String)> {
    registry_auth
        .map(|v| ("X-Registry-Auth", v.to_string()))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_group_values() {
        let f = vec![
            ("status".to_string(), "running".to_string()),
            ("label".to_string(), "a=b".to_string()),
            ("status".to_string(), "exited".to_string()),
        ];
        assert_eq!(
            filters_json(&f),
            r#"{"label":["a=b"],"status":["running","exited"]}"#
        );
    }
}
