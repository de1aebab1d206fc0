//! `volume create|ls|inspect|rm|prune`, with the docker CLI's flags and output.

use std::io::{BufRead, Write};

use berth_api::volume::{Volume, VolumeCreateOptions};
use berth_api::Client;
use clap::{Args, Subcommand};

use crate::error::CliError;
use crate::format::{self, render_rows};
use crate::template::Template;
use crate::value::Value;

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(visible_aliases = ["list"])]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(visible_aliases = ["remove"])]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

impl VolumeCmd {
    pub fn name(&self) -> &'static str {
        match self {
            VolumeCmd::Create(_) => "volume create",
            VolumeCmd::Ls(_) => "volume ls",
            VolumeCmd::Inspect(_) => "volume inspect",
            VolumeCmd::Rm(_) => "volume rm",
            VolumeCmd::Prune(_) => "volume prune",
        }
    }
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long)]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    /// VOLUME
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// VOLUME
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    /// VOLUME
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn key_values(
    items: &[String],
    what: &str,
) -> Result<std::collections::BTreeMap<String, String>, CliError> {
    let mut m = std::collections::BTreeMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), v.to_string()),
            None if what == "label" => m.insert(i.clone(), String::new()),
            None => {
                return Err(CliError::Usage(format!(
                    "invalid argument \"{i}\" for \"-o, --opt\" flag: invalid key-value pair: {i}"
                )))
            }
        };
    }
    Ok(m)
}

fn filters(items: &[String]) -> Result<Vec<(String, String)>, CliError> {
    items
        .iter()
        .map(|f| {
            f.split_once('=')
                .map(|(k, v)| (k.trim().to_lowercase(), v.to_string()))
                .ok_or_else(|| CliError::msg("bad format of filter (expected name=value)"))
        })
        .collect()
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> Result<i32, CliError> {
    match cmd {
        VolumeCmd::Create(a) => create(c, a).await,
        VolumeCmd::Ls(a) => ls(c, a).await,
        VolumeCmd::Inspect(a) => inspect(c, a).await,
        VolumeCmd::Rm(a) => rm(c, a).await,
        VolumeCmd::Prune(a) => prune(c, a).await,
    }
}

async fn create(c: &Client, a: VolumeCreateArgs) -> Result<i32, CliError> {
    if a.name.is_some() && a.name_flag.is_some() {
        return Err(CliError::Usage(
            "conflicting options: cannot specify a volume-name through both --name and as a positional arg".into(),
        ));
    }
    let opts = VolumeCreateOptions {
        name: a.name.or(a.name_flag).unwrap_or_default(),
        driver: a.driver,
        driver_opts: Some(key_values(&a.opt, "opt")?),
        labels: Some(key_values(&a.label, "label")?),
    };
    let v = c.volume_create(&opts).await?;
    println!("{}", v.name);
    Ok(0)
}

const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Driver", "DRIVER"),
    ("Name", "VOLUME NAME"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("Availability", "AVAILABILITY"),
    ("Group", "GROUP"),
];

fn row(v: &Volume) -> Value {
    let labels: Vec<String> = v.labels.iter().map(|(k, x)| format!("{k}={x}")).collect();
    let label_map = Value::Object(
        v.labels
            .iter()
            .map(|(k, x)| (k.clone(), Value::Str(x.clone())))
            .collect(),
    );
    Value::Object(vec![
        ("Driver".into(), Value::Str(v.driver.clone())),
        ("Name".into(), Value::Str(v.name.clone())),
        ("Scope".into(), Value::Str(v.scope.clone())),
        ("Mountpoint".into(), Value::Str(v.mountpoint.clone())),
        ("Labels".into(), Value::Str(labels.join(","))),
        ("Label".into(), label_map),
        ("Links".into(), Value::Str("N/A".into())),
        ("Size".into(), Value::Str("N/A".into())),
        ("Availability".into(), Value::Str("N/A".into())),
        ("Group".into(), Value::Str("N/A".into())),
    ])
}

async fn ls(c: &Client, a: VolumeLsArgs) -> Result<i32, CliError> {
    let resp = c.volume_list(&filters(&a.filter)?).await?;
    for w in &resp.warnings {
        eprintln!("{w}");
    }
    let mut vols = resp.volumes;
    vols.sort_by(|x, y| x.name.cmp(&y.name));
    let rows: Vec<Value> = vols.iter().map(row).collect();
    let fmt = crate::format::listing_format(
        a.quiet.then_some("{{.Name}}"),
        a.format.as_deref(),
        "table {{.Driver}}\t{{.Name}}",
    );
    print!("{}", render_rows(&fmt, VOLUME_HEADERS, &rows)?);
    Ok(0)
}

async fn inspect(c: &Client, a: VolumeInspectArgs) -> Result<i32, CliError> {
    let tmpl = match a.format.as_deref().filter(|f| !f.trim().is_empty()) {
        Some("json") | None => None,
        Some(f) => Some(Template::parse(f)?),
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        let path = format!("/volumes/{}", berth_api::client::encode_query_component(n));
        let r = match c
            .request(
                berth_api::client::Method::GET,
                &path,
                &[],
                berth_api::Body::Empty,
            )
            .await
        {
            Ok(resp) => resp.bytes().await,
            Err(e) => Err(e),
        };
        match r {
            Ok(b) => found.push(Value::from_json(&b)?),
            Err(e) if e.status().is_none() => return Err(e.into()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(format::print_inspected(tmpl.as_ref(), found, &errors)?)
}

async fn rm(c: &Client, a: VolumeRmArgs) -> Result<i32, CliError> {
    let mut failed = false;
    for n in &a.names {
        match c.volume_remove(n, a.force).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

async fn prune(c: &Client, a: VolumePruneArgs) -> Result<i32, CliError> {
    let mut f = filters(&a.filter)?;
    if a.all {
        f.push(("all".into(), "true".into()));
    }
    if !a.force {
        let warning = if a.all {
            "WARNING! This will remove all local volumes not used by at least one container."
        } else {
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        };
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        if !matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Ok(0);
        }
    }
    let r = c.volume_prune(&f).await?;
    if !r.volumes_deleted.is_empty() {
        println!("Deleted Volumes:");
        for v in &r.volumes_deleted {
            println!("{v}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        format::human_size(r.space_reclaimed as i64)
    );
    Ok(0)
}
