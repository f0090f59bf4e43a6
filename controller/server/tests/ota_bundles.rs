//! Bundle publishing and serving: the controller refuses unsigned or broken bundles,
//! serves published ones with HTTP Range, and the device downloader resumes an
//! interrupted download where it stopped.

use std::path::{Path, PathBuf};

use gavel_controller::ota::{BundleRepo, PublishedBundle, routes};
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
