//! Bundle publishing and serving: the controller refuses unsigned or broken bundles,
//! serves published ones with HTTP Range, and the device downloader resumes an
//! interrupted download where it stopped.

use std::path::{Path, PathBuf};

use gavel_controller::ota::{BundleFormat, BundleRepo, PublishedBundle, routes};
use gavel_ota::bundle::{self, BuildSpec};
use gavel_ota::download::{DownloadError, download};

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../ota/test-keys")
        .join(name)
}

fn build(dir: &Path, len: usize, sign: bool) -> PathBuf {
    let mut rng = fastrand_bytes(len);
    let img = dir.join("image");
    std::fs::write(&img, &mut rng).unwrap();
    let out = dir.join(if sign { "signed.gota" } else { "unsigned.gota" });
    let spec = BuildSpec {
        version: "2.0.0".parse().unwrap(),
        compatible: vec!["courtroom-terminal".into()],
        min_version: None,
        image: img,
        base: None,
        description: Some("test".into()),
    };
    bundle::build(&out, &spec, &mut |_| {}).unwrap();
    if sign {
        let k = gavel_ota::signature::load_signing_key(&key("TEST-ONLY-release.key")).unwrap();
        bundle::sign_in_place(&out, &k).unwrap();
    }
    out
}

fn fastrand_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn serve(dir: &Path) -> String {
    let repo = BundleRepo::open(dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, routes(repo)).await.unwrap();
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn published_bundle_download_resumes_after_an_interruption() {
    let tmp = tempfile::tempdir().unwrap();
    let base = serve(&tmp.path().join("repo")).await;
    let http = reqwest::Client::new();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();

    // Unsigned and truncated bundles are refused with a reason.
    let unsigned = build(&work, 300_000, false);
    let r = http
        .post(format!("{base}/api/v1/ota/bundles"))
        .body(std::fs::read(&unsigned).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("not signed"));
    let signed = build(&work, 3_000_000, true);
    let bytes = std::fs::read(&signed).unwrap();
    let r = http
        .post(format!("{base}/api/v1/ota/bundles"))
        .body(bytes[..bytes.len() - 5].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("truncated"));

    // A good one is published and listed.
    let r = http
        .post(format!("{base}/api/v1/ota/bundles"))
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: PublishedBundle = r.json().await.unwrap();
    let list: Vec<PublishedBundle> = http
        .get(format!("{base}/api/v1/ota/bundles"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].sha256, bundle::sha256(&bytes));

    // A Range request gets 206.
    let r = http
        .get(format!("{base}/api/v1/ota/bundles/{}", p.name))
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &bytes[100..200]);

    // The device downloads, is interrupted at about a third, and resumes.
    let url = format!("{base}/api/v1/ota/bundles/{}", p.name);
    let dest = tmp.path().join("device-download.part");
    let third = p.size / 3;
    let e = download(&http, &url, &dest, p.size, 0, &mut |done: u64| done < third)
        .await
        .unwrap_err();
    let DownloadError::Stopped(at) = e else {
        panic!("{e}")
    };
    assert!(at >= third && at < p.size);
    let d = download(&http, &url, &dest, p.size, 80_000_000, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(d.resumed_from, at);
    assert_eq!(d.received, p.size - at);
    assert_eq!(bundle::sha256(&std::fs::read(&dest).unwrap()), p.sha256);
    // Already complete: nothing more is fetched.
    let again = download(&http, &url, &dest, p.size, 0, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(again.received, 0);
}

fn have(tool: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A RAUC bundle built with `rauc bundle` and a throw-away certificate; `manifest` is the
/// `[update]` section's body.
fn raucb(dir: &Path, name: &str, update: &str, image: &[u8]) -> Vec<u8> {
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    if !cert.exists() {
        run(std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", "/CN=gavel-test-controller"]));
    }
    let content = dir.join(format!("content-{name}"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("rootfs.img"), image).unwrap();
    std::fs::write(
        content.join("manifest.raucm"),
        format!(
            "[update]\n{update}\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n"
        ),
    )
    .unwrap();
    let out = dir.join(format!("{name}.raucb"));
    run(std::process::Command::new("rauc")
        .arg("bundle")
        .arg(format!("--cert={}", cert.display()))
        .arg(format!("--key={}", key.display()))
        .arg(&content)
        .arg(&out));
    std::fs::read(out).unwrap()
}

#[tokio::test]
async fn rauc_bundle_is_published_with_its_version_and_profile_and_broken_ones_are_refused_with_the_reason()
 {
    if let Some(t) = ["rauc", "openssl", "mksquashfs"]
        .into_iter()
        .find(|t| !have(t))
    {
        eprintln!("skipped: needs `{t}` (apt-get install rauc openssl squashfs-tools)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo_dir = tmp.path().join("repo");
    let base = serve(&repo_dir).await;
    let http = reqwest::Client::new();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let image = fastrand_bytes(200_000);
    let post = |bytes: Vec<u8>| {
        let http = http.clone();
        let url = format!("{base}/api/v1/ota/bundles");
        async move {
            let r = http.post(url).body(bytes).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // Broken bundles are refused at publish, each with what was wrong.
    let good = raucb(
        &work,
        "good",
        "compatible=gavel-ip-camera\nversion=2.1.0",
        &image,
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "exceeds bundle size",
        ),
        (
            "no version",
            raucb(&work, "nov", "compatible=gavel-ip-camera", &image),
            "manifest has no `version`",
        ),
        (
            "free-text version",
            raucb(
                &work,
                "free",
                "compatible=gavel-ip-camera\nversion=2024.11-rc1",
                &image,
            ),
            "is not MAJOR.MINOR.PATCH",
        ),
        (
            "foreign compatible",
            raucb(
                &work,
                "acme",
                "compatible=acme-board\nversion=2.1.0",
                &image,
            ),
            "names no Gavel device profile",
        ),
    ];
    for (what, bytes, reason) in cases {
        let (status, text) = post(bytes).await;
        println!("{what}: {status} {text}");
        assert_eq!(status, 422, "{what}: {text}");
        assert!(
            text.contains("RAUC bundle") && text.contains(reason),
            "{what}: {text}"
        );
    }
    let stored: Vec<_> = std::fs::read_dir(&repo_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        stored.is_empty(),
        "nothing kept of refused bundles: {stored:?}"
    );

    // The good one: version, profile (`gavel-ip-camera` is `ip-camera`), size, SHA-256.
    let (status, text) = post(good.clone()).await;
    assert_eq!(status, 201, "{text}");
    let p: PublishedBundle = serde_json::from_str(&text).unwrap();
    assert_eq!(p.format, BundleFormat::Raucb);
    assert!(
        p.name.starts_with("2.1.0-") && p.name.ends_with(".raucb"),
        "{}",
        p.name
    );
    assert_eq!(p.manifest.version.to_string(), "2.1.0");
    assert_eq!(p.manifest.compatible, vec!["ip-camera".to_owned()]);
    assert_eq!(p.rauc_compatible.as_deref(), Some("gavel-ip-camera"));
    assert_eq!(p.size, good.len() as u64);
    assert_eq!(p.sha256, bundle::sha256(&good));
    let list: Vec<PublishedBundle> = http
        .get(format!("{base}/api/v1/ota/bundles"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, p.name);

    // Served whole and by Range, so a device's download resumes.
    let url = format!("{base}/api/v1/ota/bundles/{}", p.name);
    let r = http
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().await.unwrap()[..], &good[1000..2000]);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(bundle::sha256(&r.bytes().await.unwrap()), p.sha256);
}
