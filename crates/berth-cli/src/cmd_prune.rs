//! `container prune`, `image prune`, `system prune`, `system df`.

use std::io::{BufRead, Write};
use std::sync::Arc;

use berth_api::client::{Body, Client, Method};
use serde_json::Value;

use crate::cli::{DfArgs, PruneArgs};
use crate::error::CliError;
use crate::format::{human_size, tabwrite};
use crate::opts::filters_json;

fn confirm(warning: &str) -> bool {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

async fn post(c: &Client, path: &str, filters: Option<String>) -> Result<Value, CliError> {
    let q: Vec<(&str, String)> = filters.map(|f| vec![("filters", f)]).unwrap_or_default();
    Ok(c.request(Method::POST, path, &q, Body::Empty)
        .await?
        .json()
        .await?)
}

async fn containers(c: &Client, a: &PruneArgs) -> Result<u64, CliError> {
    let r = post(c, "/containers/prune", filters_json(&a.filter, &[])?).await?;
    if let Some(ids) = r["ContainersDeleted"].as_array().filter(|a| !a.is_empty()) {
        println!("Deleted Containers:");
        for id in ids {
            println!("{}", id.as_str().unwrap_or(""));
        }
        println!();
    }
    Ok(r["SpaceReclaimed"].as_u64().unwrap_or(0))
}

async fn images(c: &Client, a: &PruneArgs) -> Result<u64, CliError> {
    let extra: &[(&str, &str)] = if a.all { &[("dangling", "false")] } else { &[] };
    let r = post(c, "/images/prune", filters_json(&a.filter, extra)?).await?;
    if let Some(items) = r["ImagesDeleted"].as_array().filter(|a| !a.is_empty()) {
        println!("Deleted Images:");
        for i in items {
            if let Some(u) = i["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = i["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    Ok(r["SpaceReclaimed"].as_u64().unwrap_or(0))
}

async fn volumes(c: &Client, a: &PruneArgs) -> Result<u64, CliError> {
    let r = post(c, "/volumes/prune", filters_json(&a.filter, &[])?).await?;
    if let Some(v) = r["VolumesDeleted"].as_array().filter(|a| !a.is_empty()) {
        println!("Deleted Volumes:");
        for n in v {
            println!("{}", n.as_str().unwrap_or(""));
        }
        println!();
    }
    Ok(r["SpaceReclaimed"].as_u64().unwrap_or(0))
}

pub async fn container_prune(c: Arc<Client>, a: PruneArgs) -> Result<i32, CliError> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let n = containers(&c, &a).await?;
    println!("Total reclaimed space: {}", human_size(n as i64));
    Ok(0)
}

pub async fn image_prune(c: Arc<Client>, a: PruneArgs) -> Result<i32, CliError> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning) {
        return Ok(0);
    }
    let n = images(&c, &a).await?;
    println!("Total reclaimed space: {}", human_size(n as i64));
    Ok(0)
}

pub async fn system_prune(c: Arc<Client>, a: PruneArgs) -> Result<i32, CliError> {
    if !a.force {
        let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n");
        if a.volumes {
            w.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        w.push_str(if a.all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        });
        w.push_str("  - unused build cache\n");
        if !confirm(&w) {
            return Ok(0);
        }
    }
    let mut total = containers(&c, &a).await?;
    if a.volumes {
        total += volumes(&c, &a).await?;
    }
    total += images(&c, &a).await?;
    println!("Total reclaimed space: {}", human_size(total as i64));
    Ok(0)
}

pub async fn df(c: Arc<Client>, a: DfArgs) -> Result<i32, CliError> {
    let v: Value = c.get_json("/system/df", &[]).await?;
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let images = arr("Images");
    let containers = arr("Containers");
    let vols = arr("Volumes");
    let img_size: i64 = images.iter().map(|i| i["Size"].as_i64().unwrap_or(0)).sum();
    let img_active = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let img_reclaim: i64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) == 0)
        .map(|i| i["Size"].as_i64().unwrap_or(0))
        .sum();
    let c_size: i64 = containers
        .iter()
        .map(|x| x["SizeRw"].as_i64().unwrap_or(0))
        .sum();
    let c_active = containers
        .iter()
        .filter(|x| x["State"] == "running")
        .count();
    let c_reclaim: i64 = containers
        .iter()
        .filter(|x| x["State"] != "running")
        .map(|x| x["SizeRw"].as_i64().unwrap_or(0))
        .sum();
    let v_size: i64 = vols
        .iter()
        .map(|x| x["UsageData"]["Size"].as_i64().unwrap_or(0))
        .sum();
    let v_active = vols
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let v_reclaim: i64 = vols
        .iter()
        .filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|x| x["UsageData"]["Size"].as_i64().unwrap_or(0))
        .sum();
    let pct = |r: i64, t: i64| {
        if t > 0 {
            format!("{} ({}%)", human_size(r), r * 100 / t)
        } else {
            human_size(r)
        }
    };
    if let Some(f) = a.format.as_deref().filter(|f| !f.is_empty()) {
        let t = crate::template::Template::parse(f)?;
        for (typ, total, active, size, rec) in [
            (
                "Images",
                images.len(),
                img_active,
                img_size,
                pct(img_reclaim, img_size),
            ),
            (
                "Containers",
                containers.len(),
                c_active,
                c_size,
                pct(c_reclaim, c_size),
            ),
            (
                "Local Volumes",
                vols.len(),
                v_active,
                v_size,
                pct(v_reclaim, v_size),
            ),
            ("Build Cache", 0, 0, 0, human_size(0)),
        ] {
            let row = serde_json::json!({"Type": typ, "TotalCount": total, "Active": active, "Size": human_size(size), "Reclaimable": rec});
            println!(
                "{}",
                t.render(&crate::value::Value::from_json(&serde_json::to_vec(&row)?)?)?
            );
        }
        return Ok(0);
    }
    let mut text = String::from("TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE\n");
    text.push_str(&format!(
        "Images\t{}\t{}\t{}\t{}\n",
        images.len(),
        img_active,
        human_size(img_size),
        pct(img_reclaim, img_size)
    ));
    text.push_str(&format!(
        "Containers\t{}\t{}\t{}\t{}\n",
        containers.len(),
        c_active,
        human_size(c_size),
        pct(c_reclaim, c_size)
    ));
    text.push_str(&format!(
        "Local Volumes\t{}\t{}\t{}\t{}\n",
        vols.len(),
        v_active,
        human_size(v_size),
        pct(v_reclaim, v_size)
    ));
    text.push_str("Build Cache\t0\t0\t0B\t0B\n");
    print!("{}", tabwrite(&text, 0, 2));
    Ok(0)
}
