//! `network create|ls|inspect|rm|connect|disconnect|prune`.

use std::collections::BTreeMap;
use std::io::Write;

use berth_api::network::{
    Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use berth_api::types::{EndpointIpamConfig, EndpointSettings};
use berth_api::Client;
use clap::{Args, Subcommand};

use crate::error::CliError;
use crate::format::render_rows;
use crate::opts::filters_json;
use crate::template::Template;
use crate::value::Value;

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
}

impl NetworkCmd {
    pub fn name(&self) -> &'static str {
        match self {
            NetworkCmd::Create(_) => "network create",
            NetworkCmd::Ls(_) => "network ls",
            NetworkCmd::Inspect(_) => "network inspect",
            NetworkCmd::Rm(_) => "network rm",
            NetworkCmd::Connect(_) => "network connect",
            NetworkCmd::Disconnect(_) => "network disconnect",
            NetworkCmd::Prune(_) => "network prune",
        }
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add link to another container
    #[arg(long)]
    pub link: Vec<String>,
    /// Add a link-local address for the container
    #[arg(long = "link-local-ip")]
    pub link_local_ip: Vec<String>,
    /// Driver options for the network
    #[arg(long = "driver-opt")]
    pub driver_opt: Vec<String>,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn kv(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (s.clone(), String::new()),
        })
        .collect()
}

pub async fn run(c: &Client, cmd: NetworkCmd) -> Result<i32, CliError> {
    match cmd {
        NetworkCmd::Create(a) => create(c, a).await,
        NetworkCmd::Ls(a) => ls(c, a).await,
        NetworkCmd::Inspect(a) => inspect(c, a).await,
        NetworkCmd::Rm(a) => rm(c, a).await,
        NetworkCmd::Connect(a) => {
            let ipam =
                (a.ip.is_some() || a.ip6.is_some() || !a.link_local_ip.is_empty()).then(|| {
                    EndpointIpamConfig {
                        ipv4_address: a.ip.clone().unwrap_or_default(),
                        ipv6_address: a.ip6.clone().unwrap_or_default(),
                        link_local_ips: (!a.link_local_ip.is_empty())
                            .then(|| a.link_local_ip.clone()),
                    }
                });
            let ep = EndpointSettings {
                aliases: (!a.alias.is_empty()).then(|| a.alias.clone()),
                ipam_config: ipam,
                links: (!a.link.is_empty()).then(|| a.link.clone()),
                driver_opts: (!a.driver_opt.is_empty()).then(|| kv(&a.driver_opt)),
                ..Default::default()
            };
            c.network_connect(
                &a.network,
                &NetworkConnectRequest {
                    container: a.container.clone(),
                    endpoint_config: Some(ep),
                },
            )
            .await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            c.network_disconnect(
                &a.network,
                &NetworkDisconnectRequest {
                    container: a.container.clone(),
                    force: a.force,
                },
            )
            .await?;
            Ok(0)
        }
        NetworkCmd::Prune(a) => prune(c, a).await,
    }
}

async fn create(c: &Client, a: CreateArgs) -> Result<i32, CliError> {
    let config = ipam_pools(&a)?;
    let req = NetworkCreateRequest {
        name: a.name.clone(),
        driver: a.driver.clone(),
        internal: a.internal,
        attachable: a.attachable,
        enable_ipv6: a.ipv6.then_some(true),
        ipam: Some(Ipam {
            driver: "default".into(),
            options: None,
            config: Some(config),
        }),
        options: Some(kv(&a.opt)),
        labels: Some(kv(&a.label)),
        check_duplicate: None,
    };
    let r = c.network_create(&req).await?;
    println!("{}", r.id);
    Ok(0)
}

/// docker's pairing of `--subnet`, `--ip-range`, `--gateway` and `--aux-address`: each of the
/// others belongs to the subnet that contains it.
fn ipam_pools(a: &CreateArgs) -> Result<Vec<IpamConfig>, CliError> {
    use std::net::IpAddr;
    fn parse_net(s: &str) -> Result<(IpAddr, u8), CliError> {
        let bad = || CliError::msg(format!("invalid CIDR address: {s}"));
        let (ip, p) = s.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let p: u8 = p.parse().map_err(|_| bad())?;
        Ok((ip, p))
    }
    fn contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
        match (net.0, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let m = u32::MAX.checked_shl(32 - net.1 as u32).unwrap_or(0);
                u32::from(n) & m == u32::from(i) & m
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let m = u128::MAX.checked_shl(128 - net.1 as u32).unwrap_or(0);
                u128::from(n) & m == u128::from(i) & m
            }
            _ => false,
        }
    }
    let mut pools: Vec<(IpamConfig, (IpAddr, u8))> = Vec::new();
    for s in &a.subnet {
        let n = parse_net(s)?;
        pools.push((
            IpamConfig {
                subnet: s.clone(),
                ..Default::default()
            },
            n,
        ));
    }
    for r in &a.ip_range {
        let rn = parse_net(r)?;
        let p = pools
            .iter_mut()
            .find(|(_, n)| contains(*n, rn.0))
            .ok_or_else(|| CliError::msg(format!("no matching subnet for range {r}")))?;
        if !p.0.ip_range.is_empty() {
            return Err(CliError::msg(
                "cannot configure multiple ranges on the same subnet",
            ));
        }
        p.0.ip_range = r.clone();
    }
    for g in &a.gateway {
        let ip: IpAddr = g
            .parse()
            .map_err(|_| CliError::msg(format!("invalid gateway address: {g}")))?;
        let p = pools
            .iter_mut()
            .find(|(_, n)| contains(*n, ip))
            .ok_or_else(|| CliError::msg(format!("no matching subnet for gateway {g}")))?;
        if !p.0.gateway.is_empty() {
            return Err(CliError::msg(format!(
                "cannot configure multiple gateways ({g}, {}) for the same subnet ({})",
                p.0.gateway, p.0.subnet
            )));
        }
        p.0.gateway = g.clone();
    }
    for x in &a.aux_address {
        let (k, v) = x
            .split_once('=')
            .ok_or_else(|| CliError::msg(format!("invalid aux-address {x}: expected name=ip")))?;
        let ip: IpAddr = v
            .parse()
            .map_err(|_| CliError::msg(format!("invalid aux-address {x}")))?;
        let p = pools
            .iter_mut()
            .find(|(_, n)| contains(*n, ip))
            .ok_or_else(|| CliError::msg(format!("no matching subnet for aux-address {v}")))?;
        p.0.auxiliary_addresses
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_string(), v.to_string());
    }
    Ok(pools.into_iter().map(|(c, _)| c).collect())
}

async fn ls(c: &Client, a: LsArgs) -> Result<i32, CliError> {
    let list = c
        .network_list(&filters_json(&a.filter, &[])?.unwrap_or_default())
        .await?;
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            let id = if a.no_trunc {
                n.id.clone()
            } else {
                n.id.chars().take(12).collect()
            };
            let labels = n
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            Value::Object(vec![
                ("ID".into(), Value::str(id)),
                ("Name".into(), Value::str(n.name.clone())),
                ("Driver".into(), Value::str(n.driver.clone())),
                ("Scope".into(), Value::str(n.scope.clone())),
                ("IPv6".into(), Value::str(n.enable_ipv6.to_string())),
                ("Internal".into(), Value::str(n.internal.to_string())),
                ("Labels".into(), Value::str(labels)),
                ("CreatedAt".into(), Value::str(n.created.clone())),
            ])
        })
        .collect();
    let fmt = crate::format::listing_format(
        a.quiet.then_some("{{.ID}}"),
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    );
    let headers: &[(&str, &str)] = &[
        ("ID", "NETWORK ID"),
        ("Name", "NAME"),
        ("Driver", "DRIVER"),
        ("Scope", "SCOPE"),
        ("IPv6", "IPV6"),
        ("Internal", "INTERNAL"),
        ("Labels", "LABELS"),
        ("CreatedAt", "CREATED AT"),
    ];
    print!("{}", render_rows(&fmt, headers, &rows)?);
    Ok(0)
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<i32, CliError> {
    let tmpl = match a
        .format
        .as_deref()
        .filter(|f| !f.trim().is_empty() && f.trim() != "json")
    {
        Some(f) => Some(Template::parse(f)?),
        None => None,
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for n in &a.names {
        match c.network_inspect_raw(n).await {
            Ok(v) => found.push(Value::from_json(&serde_json::to_vec(&v)?)?),
            Err(e) if e.status().is_none() => return Err(e.into()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(crate::format::print_inspected(
        tmpl.as_ref(),
        found,
        &errors,
    )?)
}

async fn rm(c: &Client, a: RmArgs) -> Result<i32, CliError> {
    let mut code = 0;
    for n in &a.names {
        match c.network_remove(n).await {
            Ok(()) => println!("{n}"),
            Err(e) if a.force && e.is_not_found() => {}
            Err(e) if e.status().is_none() => return Err(e.into()),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

async fn prune(c: &Client, a: PruneArgs) -> Result<i32, CliError> {
    if !a.force {
        print!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let r = c
        .network_prune(&filters_json(&a.filter, &[])?.unwrap_or_default())
        .await?;
    let deleted = r.networks_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for n in deleted {
            println!("{n}");
        }
    }
    Ok(0)
}
