//! Writes one of Berth's offline test images as a `docker save` tarball.
//!
//! usage: berth-test-image busybox|hello-world|layered|cri [--legacy] [--tag NAME:TAG] [-o FILE]
//!        berth-test-image layers TAR... [--tag NAME:TAG] [-o FILE]
//! (to stdout without -o). Then: `berth load -i FILE`. `layers` makes an image whose layers are
//! the given tar files, in order (the pull benchmark's many-layer image). `cri` writes every
//! stand-in of critest's images under their real names (`berth_testkit::cri`).

use std::io::Write;
use std::path::PathBuf;

use berth_testkit::image::{self, SaveFormat};

fn main() {
    if let Err(e) = run() {
        eprintln!("berth-test-image: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut which = None;
    let mut format = SaveFormat::Oci;
    let mut out: Option<PathBuf> = None;
    let mut tag: Option<String> = None;
    let mut tars: Vec<PathBuf> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--legacy" => format = SaveFormat::Legacy,
            "-o" | "--output" => out = Some(it.next().ok_or("-o needs a file")?.into()),
            "--tag" => tag = Some(it.next().ok_or("--tag needs NAME:TAG")?.clone()),
            "-h" | "--help" => {
                println!("usage: berth-test-image busybox|hello-world|layered|cri [--legacy] [--tag NAME:TAG] [-o FILE]");
                println!("       berth-test-image layers TAR... [--tag NAME:TAG] [-o FILE]");
                return Ok(());
            }
            w if which.is_none() && !w.starts_with('-') => which = Some(w.to_string()),
            t if which.as_deref() == Some("layers") && !t.starts_with('-') => tars.push(t.into()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let cache = std::env::temp_dir().join("berth-testkit");
    if which.as_deref() == Some("cri") {
        // Every stand-in of critest's images, in one archive.
        let imgs = berth_testkit::cri::images(&cache).map_err(|e| e.to_string())?;
        let refs: Vec<&image::Image> = imgs.iter().collect();
        return write_out(out, &image::save_tar(&refs, format));
    }
    let img = match which.as_deref().unwrap_or("busybox") {
        "busybox" => image::busybox_image(),
        "hello-world" | "hello" => image::hello_image(&cache),
        "layered" => image::layered_image(),
        "layers" => {
            if tars.is_empty() {
                return Err("layers needs at least one tar file".into());
            }
            let mut img = image::Image::new(
                "layers:latest",
                serde_json::json!({"Env": [image::DEFAULT_PATH], "Cmd": ["sh"]}),
            );
            for t in &tars {
                let tar = std::fs::read(t).map_err(|e| format!("read {}: {e}", t.display()))?;
                img = img.raw_layer(&format!("layer {}", t.display()), tar);
            }
            Ok(img)
        }
        other => {
            return Err(format!(
                "unknown image {other:?} (busybox, hello-world, layered, layers)"
            ))
        }
    }
    .map_err(|e| e.to_string())?;
    let img = match &tag {
        Some(t) => img.retag(&[t]),
        None => img,
    };
    write_out(out, &img.save_tar(format))
}

fn write_out(out: Option<PathBuf>, tar: &[u8]) -> Result<(), String> {
    match out {
        Some(p) => std::fs::write(&p, tar).map_err(|e| format!("write {}: {e}", p.display())),
        None => std::io::stdout()
            .write_all(tar)
            .map_err(|e| format!("write stdout: {e}")),
    }
}
