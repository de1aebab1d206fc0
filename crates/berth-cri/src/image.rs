//! `runtime.v1.ImageService` on Berth's image store: an image pulled through either API is
//! there for both. Names are given in full (`docker.io/library/busybox:latest`), as the kubelet
//! expects; the store keeps Docker's familiar form.

use std::collections::HashMap;

use berth_engine::{Engine, EngineError, Transfer};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::error::{CriError, Result};

/// `busybox:latest` -> `docker.io/library/busybox:latest`; other registries unchanged.
pub(crate) fn full_name(name: &str) -> String {
    let (first, rest) = match name.split_once('/') {
        None => return format!("docker.io/library/{name}"),
        Some(x) => x,
    };
    if first.contains('.') || first.contains(':') || first == "localhost" {
        name.to_string()
    } else {
        let _ = rest;
        format!("docker.io/{name}")
    }
}

/// The image's user: a number is its uid, anything else its user name.
fn user_of(user: &str) -> (Option<i64>, String) {
    let u = user.split(':').next().unwrap_or("");
    if u.is_empty() {
        return (None, String::new());
    }
    match u.parse::<i64>() {
        Ok(n) => (Some(n), String::new()),
        Err(_) => (None, u.to_string()),
    }
}

pub(crate) fn to_cri(img: &berth_image::Image) -> cri::Image {
    let user = img
        .config
        .config
        .as_ref()
        .and_then(|c| c.user.clone())
        .unwrap_or_default();
    let (uid, username) = user_of(&user);
    cri::Image {
        id: img.id.clone(),
        repo_tags: img.repo_tags.iter().map(|t| full_name(t)).collect(),
        repo_digests: img.repo_digests.iter().map(|d| full_name(d)).collect(),
        size: img.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: img.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

pub struct Images {
    pub(crate) engine: Engine,
}

impl Images {
    async fn get(&self, name: &str) -> Result<Option<berth_image::Image>> {
        let store = self.engine.images();
        let n = name.to_string();
        match tokio::task::spawn_blocking(move || store.get(&n)).await {
            Ok(Ok(img)) => Ok(Some(img)),
            Ok(Err(e)) if e.kind() == berth_image::ErrorKind::NotFound => Ok(None),
            // A name the store cannot even parse names no image it has.
            Ok(Err(e)) if e.kind() == berth_image::ErrorKind::InvalidArgument => Ok(None),
            Ok(Err(e)) => Err(CriError::Engine(EngineError::Internal(e.to_string()))),
            Err(e) => Err(CriError::Engine(EngineError::internal(e))),
        }
    }

    /// Pulls `reference`; returns the image id.
    pub(crate) async fn pull(
        &self,
        reference: &str,
        auth: Option<berth_registry::RegistryAuth>,
    ) -> Result<String> {
        if reference.is_empty() {
            return Err(CriError::invalid("no image given"));
        }
        let mut rx = self.engine.image_pull(reference.to_string(), None, auth);
        while let Some(t) = rx.recv().await {
            if let Transfer::Failed(e) = t {
                return Err(e.into());
            }
        }
        match self.get(reference).await? {
            Some(img) => Ok(img.id),
            None => Err(CriError::Engine(EngineError::Internal(format!(
                "pulled {reference} but the store does not have it"
            )))),
        }
    }
}

fn spec_image(s: &Option<cri::ImageSpec>) -> &str {
    s.as_ref().map(|s| s.image.as_str()).unwrap_or("")
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let want = request
            .into_inner()
            .filter
            .map(|f| spec_image(&f.image).to_string())
            .unwrap_or_default();
        let images = if want.is_empty() {
            let store = self.engine.images();
            tokio::task::spawn_blocking(move || store.list())
                .await
                .map_err(|e| Status::unknown(e.to_string()))?
                .map_err(|e| Status::unknown(e.to_string()))?
        } else {
            self.get(&want).await?.into_iter().collect()
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(to_cri).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let r = request.into_inner();
        let name = spec_image(&r.image);
        if name.is_empty() {
            return Err(Status::invalid_argument("no image given"));
        }
        let img = self.get(name).await?;
        let mut info = HashMap::new();
        if r.verbose {
            if let Some(i) = &img {
                info.insert(
                    "info".to_string(),
                    serde_json::json!({"id": i.id, "size": i.size, "created": i.created})
                        .to_string(),
                );
            }
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: img.as_ref().map(to_cri),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let r = request.into_inner();
        let auth = r.auth.map(|a| berth_registry::RegistryAuth {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: a.server_address,
            registry_token: a.registry_token,
            identity_token: a.identity_token,
        });
        let id = self.pull(spec_image(&r.image), auth).await?;
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let r = request.into_inner();
        let name = spec_image(&r.image);
        if name.is_empty() {
            return Err(Status::invalid_argument("no image given"));
        }
        // The whole image goes, whichever of its names was given; a missing one is no error.
        if let Some(img) = self.get(name).await? {
            match self.engine.image_remove(&img.id, true, false).await {
                Ok(_) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(CriError::from(e).into()),
            }
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let store = self.engine.images();
        let images = tokio::task::spawn_blocking(move || store.list())
            .await
            .map_err(|e| Status::unknown(e.to_string()))?
            .map_err(|e| Status::unknown(e.to_string()))?;
        let used: u64 = images.iter().map(|i| i.size).sum();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let root = self.engine.config().data_root.join("image");
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: root.display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value { value: used }),
                inodes_used: None,
            }],
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_full() {
        assert_eq!(
            full_name("busybox:latest"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(full_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            full_name("registry.k8s.io/e2e-test-images/busybox:1.29-2"),
            "registry.k8s.io/e2e-test-images/busybox:1.29-2"
        );
        assert_eq!(full_name("localhost/x:1"), "localhost/x:1");
        assert_eq!(full_name("127.0.0.1:5000/x:1"), "127.0.0.1:5000/x:1");
        assert_eq!(
            full_name("busybox@sha256:ab"),
            "docker.io/library/busybox@sha256:ab"
        );
    }

    #[test]
    fn users() {
        assert_eq!(user_of(""), (None, String::new()));
        assert_eq!(user_of("1002"), (Some(1002), String::new()));
        assert_eq!(user_of("1003:1003"), (Some(1003), String::new()));
        assert_eq!(user_of("www-data"), (None, "www-data".into()));
        assert_eq!(user_of("www-data:www-data"), (None, "www-data".into()));
    }
}
