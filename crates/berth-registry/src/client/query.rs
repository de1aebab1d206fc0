//! Distribution inspect, search and login.

use super::*;

/// `GET /distribution/{name}/json`: the descriptor the reference resolves to and its platforms.
pub fn inspect_distribution(
    reference: &str,
    opts: &PullOptions,
) -> Result<DistributionInspect, RegistryError> {
    let r = parse_ref(reference)?;
    let rt = runtime()?;
    let r = &r;
    on_pull_endpoints(&rt, r, opts, |s| async move {
        let target = r.digest.clone().or(r.tag.clone()).unwrap_or_default();
        let (digest, media, body) = get_manifest(&s, &target, &r.familiar()).await?;
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Unsupported(format!("invalid manifest: {e}")))?;
        let platforms = if is_index(&media, &m) {
            m.manifests
                .unwrap_or_default()
                .into_iter()
                .filter_map(|d| d.platform)
                .collect()
        } else if let Some(c) = &m.config {
            let cfg = get_blob_bytes(&s, &c.digest, MAX_CONFIG).await?;
            let p: ConfigPeek = serde_json::from_slice(&cfg)
                .map_err(|e| RegistryError::Unsupported(format!("invalid config: {e}")))?;
            vec![Platform {
                architecture: p.architecture,
                os: p.os,
                variant: p.variant,
                os_version: None,
            }]
        } else {
            Vec::new()
        };
        Ok::<_, RegistryError>(DistributionInspect {
            descriptor: Descriptor {
                media_type: media,
                digest,
                size: body.len() as u64,
                ..Default::default()
            },
            platforms,
        })
    })
}

/// One repository a registry's search found (the v1 search API's result, Docker's API shape).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SearchResult {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: i64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

#[derive(Deserialize)]
struct SearchResponse {
    #[serde(default)]
    results: Vec<SearchResult>,
}

/// `docker search TERM`: the v1 search API of the index the term names (`host[:port]/words`),
/// or of Docker Hub's index. Docker Hub mirrors are not searched, as in Docker.
pub fn search(
    term: &str,
    limit: usize,
    insecure_registries: &[String],
    auth: Option<&RegistryAuth>,
) -> Result<Vec<SearchResult>, RegistryError> {
    let (index, query) = match term.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("index.docker.io", term),
    };
    if query.is_empty() {
        return Err(RegistryError::Config("search term cannot be empty".into()));
    }
    let domain = if index == "index.docker.io" {
        DOCKER_HUB
    } else {
        index
    };
    let base = if domain == DOCKER_HUB {
        "https://index.docker.io".to_string()
    } else {
        format!("{}://{index}", scheme_for(index, insecure_registries))
    };
    let rt = runtime()?;
    let http = http_client(&[index], None)?;
    rt.block_on(async {
        let url = format!("{base}/v1/search");
        let mut req = http
            .get(&url)
            .query(&[("q", query), ("n", &limit.to_string())]);
        if let Some(RegistryAuth {
            username, password, ..
        }) = auth
        {
            if !username.is_empty() {
                req = req.basic_auth(username, Some(password));
            }
        }
        let resp = req
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(RegistryError::Http(format!(
                "Unexpected status code {}",
                status.as_u16()
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        let body: SearchResponse = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Http(format!("invalid search response from {index}: {e}"))
        })?;
        Ok(body.results)
    })
}

/// `POST /auth`: checks credentials against a registry. Returns Docker's status text.
pub fn login(
    server_address: &str,
    auth: &RegistryAuth,
    insecure_registries: &[String],
) -> Result<String, RegistryError> {
    let addr = server_address
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let addr = addr.split('/').next().unwrap_or(addr);
    let domain = match addr {
        "" | "index.docker.io" | "docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        a => a,
    };
    let rt = runtime()?;
    let http = http_client(&[domain], None)?;
    let mut last = None;
    for base in endpoints(domain, insecure_registries, &[]) {
        match rt.block_on(login_at(&http, &base, auth)) {
            Ok(status) => return Ok(status),
            Err(e) => {
                let connection = matches!(e, RegistryError::Http(_));
                keep_error(&mut last, e);
                if !connection {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| RegistryError::Http("no endpoint".into())))
}

async fn login_at(
    http: &reqwest::Client,
    base: &str,
    auth: &RegistryAuth,
) -> Result<String, RegistryError> {
    {
        let url = format!("{base}/v2/");
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok("Login Succeeded".to_string());
        }
        let s = Session {
            http: http.clone(),
            base: base.to_string(),
            repo: String::new(),
            auth: Some(auth.clone()),
            scopes: Vec::new(),
            authz: tokio::sync::Mutex::new(None),
        };
        let Some(h) = s.answer_challenge(resp.headers()).await? else {
            return Err(RegistryError::Unauthorized(format!(
                "Get \"{url}\": unauthorized: authentication required"
            )));
        };
        let resp = http
            .get(&url)
            .header(AUTHORIZATION, h)
            .send()
            .await
            .map_err(|e| net_err(&format!("Get \"{url}\""), e))?;
        if resp.status().is_success() {
            Ok("Login Succeeded".to_string())
        } else {
            Err(RegistryError::Unauthorized(format!(
                "login attempt to {url} failed with status: {}",
                resp.status()
            )))
        }
    }
}
