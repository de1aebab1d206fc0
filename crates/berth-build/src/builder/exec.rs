//! RUN: the command (shell or exec form, heredocs), its environment (build args but not in
//! the image), its mounts and network, the container run through the engine, and its diff
//! committed as a layer.

use super::layer::{rewrite_diff, tempfile_in};
use super::plan::PROXY_ARGS;
use super::stage::StageRun;
use super::util::{expand, failed, is_only_heredoc, json_list, short};
use super::{BuildError, RunEvent, RunSpec};
use crate::parser::Heredoc;
use std::collections::BTreeSet;
use std::io::Seek;

impl StageRun<'_, '_, '_> {
    /// The command a RUN runs: exec form as is, shell form through the stage's SHELL, with
    /// heredocs as the script (or appended to it).
    fn run_command(&self, args: &[String], json: bool, heredocs: &[Heredoc]) -> Vec<String> {
        if json {
            return args.to_vec();
        }
        let line = args.join(" ");
        let script = if heredocs.len() == 1 && is_only_heredoc(&line) {
            heredocs[0].content.clone()
        } else if heredocs.is_empty() {
            line
        } else {
            let mut s = line;
            s.push('\n');
            for h in heredocs {
                s.push_str(&h.content);
                s.push_str(&h.name);
                s.push('\n');
            }
            s
        };
        let mut v = self.st.shell();
        v.push(script);
        v
    }

    /// `RUN --network`: none, host (when allowed) or default.
    fn run_network(&self, flag: Option<String>) -> Result<Option<String>, BuildError> {
        let Some(n) = flag else {
            return Ok(self.run.opts.network.clone());
        };
        let lx = self.run.lexer();
        let n = expand(&lx, &n, &self.st.subst_env())?;
        match n.as_str() {
            "default" => Ok(self.run.opts.network.clone()),
            "none" => Ok(Some("none".into())),
            "host" if self.run.opts.allow_network_host => Ok(Some("host".into())),
            "host" => Err(BuildError::BadRequest(
                "network.host is not allowed: grant the network.host entitlement (--allow network.host)".into(),
            )),
            _ => Err(BuildError::BadRequest(format!(
                "unsupported network mode {n:?} for RUN --network (default, none or host)"
            ))),
        }
    }

    pub(super) fn run_step(
        &mut self,
        args: &[String],
        json: bool,
        heredocs: &[Heredoc],
        network: Option<String>,
        mount_specs: &[String],
        security: Option<&str>,
    ) -> Result<(), BuildError> {
        let cmd = self.run_command(args, json, heredocs);
        let insecure = match security {
            None | Some("sandbox") => false,
            Some("insecure") if self.run.opts.allow_insecure => true,
            Some("insecure") => {
                return Err(BuildError::BadRequest(
                    "security.insecure is not allowed: RUN --security=insecure needs the security.insecure entitlement (--allow security.insecure)".into(),
                ))
            }
            Some(s) => {
                return Err(BuildError::BadRequest(format!(
                    "unsupported security mode {s:?} for RUN --security (sandbox or insecure)"
                )))
            }
        };
        // Build args in effect go to the container's env and into the cache key.
        let arg_env: Vec<String> = self
            .st
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        let config_env = self.st.env_list();
        let config_keys: BTreeSet<&str> = config_env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |p| p.0))
            .collect();
        let mut env: Vec<String> = arg_env
            .iter()
            .filter(|e| !config_keys.contains(e.split_once('=').map_or(e.as_str(), |p| p.0)))
            .cloned()
            .collect();
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.run.opts.build_args.get(*p) {
                if !self.st.args.contains_key(*p) {
                    env.push(format!("{p}={v}"));
                }
            }
        }
        env.extend(config_env.iter().cloned());
        let shown = cmd.join(" ");
        let created_by = if arg_env.is_empty() {
            shown.clone()
        } else {
            format!("|{} {} {}", arg_env.len(), arg_env.join(" "), shown)
        };
        let network = self.run_network(network)?;
        let lx = self.run.lexer();
        let subst = self.st.subst_env();
        let mut specs = Vec::new();
        for m in mount_specs {
            specs.push(expand(&lx, m, &subst)?);
        }
        let fs = self.image_fs()?;
        let prepared = self.prepare_mounts(&specs, &fs)?;
        let mut key_src =
            format!("RUN {}|{}", json_list(&cmd), created_by) + &format!("|{network:?}");
        if !prepared.key.is_empty() || insecure {
            key_src += &format!("|{}|{insecure}", prepared.key.join("|"));
        }
        let key = self.cache_key(&key_src);
        if self.try_cache(&key)? {
            return Ok(());
        }
        // Secret env variables and the agent socket reach the step, not the image.
        for e in &prepared.env {
            let k = e.split_once('=').map_or(e.as_str(), |p| p.0);
            env.retain(|x| x.split_once('=').map_or(x.as_str(), |p| p.0) != k);
            env.push(e.clone());
        }
        let image_id = self.ensure_image()?;
        let cc = self.st.config.config.clone().unwrap_or_default();
        let opts = self.run.opts;
        let spec = RunSpec {
            image_id,
            cmd: cmd.clone(),
            env,
            user: cc.user.clone().unwrap_or_default(),
            workdir: cc.working_dir.clone().unwrap_or_default(),
            network,
            extra_hosts: opts.extra_hosts.clone(),
            mounts: prepared.mounts.clone(),
            insecure,
            shm_size: opts.shm_size,
            ulimits: opts.ulimits.clone(),
            cgroup_parent: opts.cgroup_parent.clone(),
            limits: opts.limits.clone(),
        };
        let progress = self.run.progress;
        let vertex = self.vertex.clone();
        let res = self.run.b.backend.run(&spec, &mut |ev| match ev {
            RunEvent::Created(id) => progress.text(&format!(" ---> Running in {}\n", short(id))),
            RunEvent::Output(b) => progress.output(&vertex, 1, b),
            RunEvent::Stderr(b) => progress.output(&vertex, 2, b),
        });
        let (cid, code) = res?;
        if self.run.b.backend.cancelled() {
            self.run.b.backend.remove(&cid);
            return Err(BuildError::Cancelled);
        }
        if code != 0 {
            if opts.keep_failed {
                self.run.b.backend.keep(&cid);
            } else {
                self.run.b.backend.remove(&cid);
            }
            return Err(BuildError::RunFailed { cmd: shown, code });
        }
        let diff = self.commit_container(&cid, &prepared.stubs);
        self.run.b.backend.remove(&cid);
        drop(prepared);
        let diff = diff?;
        self.say(&format!(
            "Removing intermediate container {}\n",
            short(&cid)
        ));
        self.finish_step(&key, created_by, Some(diff))
    }

    /// The container's changes as a layer on the stage's current top layer (mount points
    /// the step's mounts needed left out).
    fn commit_container(&self, cid: &str, stubs: &BTreeSet<String>) -> Result<String, BuildError> {
        let b = self.run.b;
        std::fs::create_dir_all(&b.tmp_dir).map_err(|e| failed("temp dir", e))?;
        let mut f = tempfile_in(&b.tmp_dir)?;
        b.store
            .snapshot_diff(cid, &mut f)
            .map_err(|e| failed("committing container", e))?;
        f.rewind().map_err(|e| failed("layer", e))?;
        let mut f = if self.run.epoch.is_some() || !stubs.is_empty() {
            rewrite_diff(f, self.run.epoch, stubs, &b.tmp_dir)?
        } else {
            f
        };
        let info = b
            .store
            .add_layer(
                self.parent_chain().as_deref(),
                &mut std::io::BufReader::new(&mut f),
            )
            .map_err(|e| failed("storing layer", e))?;
        Ok(info.diff_id)
    }
}
