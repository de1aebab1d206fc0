//! Instructions that change the image's config (and WORKDIR, which may create its directory).

use super::stage::StageRun;
use super::util::{expand, json_list, with_shell};
use super::BuildError;
use crate::context::clean_rel;
use crate::instructions::{Command, Kind};
use crate::shell::Lexer;
use berth_image::config::{EmptyObject, HealthConfig};
use std::path::Path;

/// ENV's or LABEL's `key=value` pairs with variables expanded, and their `k=v k=v` text for
/// the history line.
fn expand_pairs(
    lx: &Lexer,
    pairs: &[(String, String)],
    env: &[String],
) -> Result<(Vec<(String, String)>, String), BuildError> {
    let mut kv = Vec::new();
    for (k, v) in pairs {
        kv.push((expand(lx, k, env)?, expand(lx, v, env)?));
    }
    let text = kv
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((kv, text))
}

fn nop(s: &str) -> String {
    format!("/bin/sh -c #(nop)  {s}")
}

impl StageRun<'_, '_, '_> {
    pub(super) fn meta(&mut self, c: &Command) -> Result<(), BuildError> {
        let lx = self.run.lexer();
        let env = self.st.subst_env();
        match &c.kind {
            Kind::Env(pairs) => {
                let (kv, text) = expand_pairs(&lx, pairs, &env)?;
                self.meta_step(nop(&format!("ENV {text}")), |st| {
                    let cc = st.cc();
                    let mut list = cc.env.take().unwrap_or_default();
                    for (k, v) in kv {
                        list.retain(|e| e.split_once('=').map_or(e.as_str(), |p| p.0) != k);
                        list.push(format!("{k}={v}"));
                    }
                    cc.env = Some(list);
                })
            }
            Kind::Label(pairs) => {
                let (kv, text) = expand_pairs(&lx, pairs, &env)?;
                self.meta_step(nop(&format!("LABEL {text}")), |st| {
                    let labels = st.cc().labels.get_or_insert_with(Default::default);
                    for (k, v) in kv {
                        labels.insert(k, v);
                    }
                })
            }
            Kind::Arg(list) => {
                let mut names = Vec::new();
                for (k, d) in list {
                    let given = self.run.opts.build_args.get(k);
                    if given.is_some() {
                        if let Ok(mut c) = self.run.consumed.lock() {
                            c.insert(k.clone());
                        }
                    }
                    let v = match given {
                        Some(Some(v)) => Some(v.clone()),
                        Some(None) => d.as_ref().map(|d| expand(&lx, d, &env)).transpose()?,
                        None => match d {
                            Some(d) => Some(expand(&lx, d, &env)?),
                            // Re-declared global ARG: its global value.
                            None => self.run.meta_values.get(k).cloned().flatten(),
                        },
                    };
                    names.push(match d {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    self.st.args.insert(k.clone(), v);
                }
                let created_by = nop(&format!("ARG {}", names.join(" ")));
                // The values are part of the cache key (they change what RUN sees).
                let vals: Vec<String> = self
                    .st
                    .args
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
                    .collect();
                let key = self.cache_key(&format!("{created_by}|{}", vals.join("|")));
                if self.try_cache(&key)? {
                    return Ok(());
                }
                self.finish_step(&key, created_by, None)
            }
            Kind::Workdir(w) => {
                let w = expand(&lx, w, &env)?;
                let path = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{}", self.st.workdir().trim_end_matches('/'), w)
                };
                let path = format!(
                    "/{}",
                    clean_rel(Path::new(&path)).unwrap_or_default().display()
                );
                let created_by = nop(&format!("WORKDIR {path}"));
                let fs = self.image_fs()?;
                let real = fs.resolve(&path);
                if fs.is_dir(&real) || real == "/" {
                    return self.meta_step(created_by, |st| st.cc().working_dir = Some(path));
                }
                let key = self.cache_key(&format!("{created_by}|mkdir"));
                if self.try_cache(&key)? {
                    return Ok(());
                }
                let mut entries = Vec::new();
                self.parent_entries(&fs, &format!("{real}/x"), &mut entries);
                let diff = self.write_layer(entries)?;
                self.st.cc().working_dir = Some(path);
                self.finish_step(&key, created_by, Some(diff))
            }
            Kind::User(u) => {
                let u = expand(&lx, u, &env)?;
                self.meta_step(nop(&format!("USER {u}")), |st| st.cc().user = Some(u))
            }
            Kind::Cmd { args, json } => {
                let v = if *json {
                    args.clone()
                } else {
                    with_shell(&self.st.shell(), args)
                };
                let created_by = nop(&format!("CMD {}", json_list(&v)));
                self.st.cmd_set = true;
                self.meta_step(created_by, |st| st.cc().cmd = Some(v))
            }
            Kind::Entrypoint { args, json } => {
                let v = if *json {
                    args.clone()
                } else {
                    with_shell(&self.st.shell(), args)
                };
                let created_by = nop(&format!("ENTRYPOINT {}", json_list(&v)));
                let clear_cmd = !self.st.cmd_set;
                self.meta_step(created_by, |st| {
                    let cc = st.cc();
                    cc.entrypoint = Some(v);
                    if clear_cmd {
                        cc.cmd = None;
                    }
                })
            }
            Kind::Shell(v) => {
                let v = v.clone();
                self.meta_step(nop(&format!("SHELL {}", json_list(&v))), |st| {
                    st.cc().shell = Some(v)
                })
            }
            Kind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    let p = expand(&lx, p, &env)?;
                    let (num, proto) = match p.split_once('/') {
                        Some((n, pr)) => (n.to_string(), pr.to_ascii_lowercase()),
                        None => (p.clone(), "tcp".to_string()),
                    };
                    let (lo, hi) = match num.split_once('-') {
                        Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                        None => (num.parse::<u16>(), num.parse::<u16>()),
                    };
                    let (Ok(lo), Ok(hi)) = (lo, hi) else {
                        return Err(BuildError::BadRequest(format!(
                            "invalid containerPort: {num}"
                        )));
                    };
                    for port in lo..=hi.max(lo) {
                        list.push(format!("{port}/{proto}"));
                    }
                }
                let created_by = nop(&format!("EXPOSE {}", list.join(" ")));
                self.meta_step(created_by, |st| {
                    let m = st.cc().exposed_ports.get_or_insert_with(Default::default);
                    for p in list {
                        m.insert(p, EmptyObject {});
                    }
                })
            }
            Kind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    list.push(expand(&lx, v, &env)?);
                }
                let created_by = nop(&format!("VOLUME {}", json_list(&list)));
                self.meta_step(created_by, |st| {
                    let m = st.cc().volumes.get_or_insert_with(Default::default);
                    for v in list {
                        m.insert(v, EmptyObject {});
                    }
                })
            }
            Kind::StopSignal(s) => {
                let s = expand(&lx, s, &env)?;
                self.meta_step(nop(&format!("STOPSIGNAL {s}")), |st| {
                    st.cc().stop_signal = Some(s)
                })
            }
            Kind::Healthcheck(h) => {
                let hc = HealthConfig {
                    test: Some(h.test.clone()),
                    interval: h.interval,
                    timeout: h.timeout,
                    start_period: h.start_period,
                    start_interval: h.start_interval,
                    retries: h.retries,
                    ..Default::default()
                };
                let created_by = nop(&format!(
                    "HEALTHCHECK {}",
                    serde_json::to_string(&hc).unwrap_or_default()
                ));
                self.meta_step(created_by, |st| st.cc().healthcheck = Some(hc))
            }
            Kind::Onbuild(t) => {
                let t = t.clone();
                self.meta_step(nop(&format!("ONBUILD {t}")), |st| {
                    st.cc().on_build.get_or_insert_with(Vec::new).push(t)
                })
            }
            Kind::Maintainer(m) => {
                let m = m.clone();
                self.meta_step(nop(&format!("MAINTAINER {m}")), |st| {
                    st.config.author = Some(m)
                })
            }
            Kind::Run { .. } | Kind::Copy(_) => Ok(()),
        }
    }
}
