//! Shared fixtures: test keys, images, bundles and a file-backed device.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gavel_ota::bootchooser::FileBootloader;
use gavel_ota::bundle::{self, BuildSpec};
use gavel_ota::signature::{self, Keyring};
use gavel_ota::slot::{FileSlots, SlotName};
use gavel_ota::{Installer, Version};

pub const PROFILE: &str = "courtroom-terminal";

pub fn key_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test-keys")
        .join(format!("TEST-ONLY-{name}"))
}

pub fn keyring() -> Keyring {
    Keyring::load(&[key_path("release.pub")]).unwrap()
}

/// A deterministic image of `len` bytes; `edit` changes a few regions (a new version).
pub fn image(len: usize, edit: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut v: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    if edit > 0 {
        let mut e = fastrand::Rng::with_seed(edit);
        for _ in 0..4 {
            let at = e.usize(..len.saturating_sub(600));
            for b in &mut v[at..at + 500] {
                *b = e.u8(..);
            }
        }
    }
    v
}

/// Builds and signs a bundle with `key` (`release` or `rogue`).
pub fn bundle(
    dir: &Path,
    name: &str,
    version: &str,
    image: &[u8],
    compatible: &[&str],
    base: Option<(&[u8], &str)>,
    key: &str,
) -> PathBuf {
    let img = dir.join(format!("{name}.img"));
    std::fs::write(&img, image).unwrap();
    let base = base.map(|(b, v)| {
        let p = dir.join(format!("{name}.base"));
        std::fs::write(&p, b).unwrap();
        (p, v.parse::<Version>().unwrap())
    });
    let out = dir.join(format!("{name}.gota"));
    let spec = BuildSpec {
        version: version.parse().unwrap(),
        compatible: compatible.iter().map(|s| s.to_string()).collect(),
        min_version: None,
        image: img,
        base,
        description: None,
    };
    bundle::build(&out, &spec, &mut |_| {}).unwrap();
    let k = signature::load_signing_key(&key_path(&format!("{key}.key"))).unwrap();
    bundle::sign_in_place(&out, &k).unwrap();
    out
}

/// A factory-fresh device: slot A holds `image` at `version`, slot B is empty.
pub fn device(dir: &Path, image: &[u8], version: &str) -> Installer<FileBootloader> {
    let slots = FileSlots::in_dir(&dir.join("slots")).unwrap();
    slots
        .provision(SlotName::A, image, version.parse().unwrap())
        .unwrap();
    let boot = FileBootloader::init(&dir.join("boot.json"), SlotName::A).unwrap();
    Installer::new(slots, boot, keyring(), PROFILE, dir)
}

/// Reopens an existing device (after a restart or power cut).
pub fn reopen(dir: &Path) -> Installer<FileBootloader> {
    let slots = FileSlots::in_dir(&dir.join("slots")).unwrap();
    let boot = FileBootloader::new(&dir.join("boot.json"));
    Installer::new(slots, boot, keyring(), PROFILE, dir)
}

/// Every file of the device (slots, records, boot state, journal) with its SHA-256.
pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for sub in [dir.to_path_buf(), dir.join("slots")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                let bytes = std::fs::read(e.path()).unwrap();
                m.insert(
                    e.path().strip_prefix(dir).unwrap().display().to_string(),
                    bundle::sha256(&bytes),
                );
            }
        }
    }
    m
}
