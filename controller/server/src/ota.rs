//! OTA bundle repository: publish (upload), list, and serve bundles to devices with HTTP
//! Range support so an interrupted download resumes.
//!
//! Bundles live in `{data_dir}/bundles/` as `{version}-{sha256[..12]}.gota` (or `.raucb`)
//! with a `.json` sidecar (manifest, file size and SHA-256). The controller checks the
//! container, the manifest and the payload hash when a bundle is published and refuses
//! unsigned bundles; devices verify the signature against their own keyring.
//!
//! RAUC bundles (`.raucb`, told apart by squashfs's `hsqs` magic) are for image-based
//! devices with `[ota] backend = "rauc"`. The controller reads their manifest with `rauc
//! info --no-verify` (it holds no keyring; the device's RAUC verifies the CMS signature
//! before it writes anything) and maps RAUC's `compatible` (`gavel-<profile>`) to the
//! device profile. Their sidecar carries a manifest in Gavel's shape so campaigns treat
//! both kinds alike: the version, `compatible: [profile]`, and the bundle file's size and
//! SHA-256 as image and payload.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use gavel_ota::bundle::{Bundle, UNSIGNED};
use gavel_ota::manifest::{Encoding, ImageInfo, MANIFEST_FORMAT, Manifest, PayloadInfo, Version};
use gavel_ota::rauc::{Rauc, RaucError, profile_for_compatible};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::api::ApiErrorBody;

/// Largest bundle accepted, bytes.
pub const MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// What kind of bundle a published file is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BundleFormat {
    /// A `gavelctl ota build` bundle (ed25519), for the `slots` backend.
    #[default]
    Gota,
    /// A RAUC bundle (CMS), for devices with the `rauc` backend.
    Raucb,
}

impl BundleFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Gota => "gota",
            Self::Raucb => "raucb",
        }
    }

    /// The format of a bundle file from its first bytes: squashfs's magic is a RAUC
    /// bundle, anything else is read as a Gavel bundle (which names what is wrong).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(b"hsqs") {
            Self::Raucb
        } else {
            Self::Gota
        }
    }
}

/// A published bundle.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublishedBundle {
    /// File name under `/api/v1/ota/bundles/`.
    pub name: String,
    /// `gota` or `raucb`.
    #[serde(default)]
    pub format: BundleFormat,
    /// A RAUC bundle's `compatible`, as the device's RAUC checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rauc_compatible: Option<String>,
    /// Bundle file size.
    pub size: u64,
    /// SHA-256 of the bundle file.
    pub sha256: String,
    /// Its manifest.
    #[schema(value_type = Object)]
    pub manifest: Manifest,
}

/// Where bundles are kept.
#[derive(Debug, Clone)]
pub struct BundleRepo {
    dir: PathBuf,
    rauc: Rauc,
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(ApiErrorBody { error: msg.into() })).into_response()
}

impl BundleRepo {
    /// A repository in `dir` (created if missing).
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            rauc: Rauc::system(),
        })
    }

    /// Reads RAUC bundles with this `rauc` (default: `rauc` from `PATH`).
    pub fn with_rauc(mut self, rauc: Rauc) -> Self {
        self.rauc = rauc;
        self
    }

    /// Every published bundle, newest version first.
    pub fn list(&self) -> std::io::Result<Vec<PublishedBundle>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Ok(b) = std::fs::read(&p)
                && let Ok(pb) = serde_json::from_slice::<PublishedBundle>(&b)
            {
                v.push(pb);
            }
        }
        v.sort_by_key(|b| std::cmp::Reverse(b.manifest.version));
        Ok(v)
    }

    /// One bundle by name.
    pub fn get(&self, name: &str) -> Option<PublishedBundle> {
        self.list().ok()?.into_iter().find(|b| b.name == name)
    }

    fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    }

    /// Stores an uploaded bundle after checking it; returns what was published.
    async fn publish(&self, body: Body) -> Result<PublishedBundle, Response> {
        let tmp = self.dir.join(format!(".upload-{}", uuid::Uuid::new_v4()));
        let result = self.receive(body, &tmp).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn receive(&self, body: Body, tmp: &Path) -> Result<PublishedBundle, Response> {
        let ioerr = |e: std::io::Error| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the bundle: {e}"),
            )
        };
        let mut f = tokio::fs::File::create(tmp).await.map_err(ioerr)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(8);
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| err(StatusCode::BAD_REQUEST, format!("upload: {e}")))?;
            if head.len() < 8 {
                let n = (8 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..n]);
            }
            size += chunk.len() as u64;
            if size > MAX_BUNDLE_BYTES {
                return Err(err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("bundle larger than {MAX_BUNDLE_BYTES} bytes"),
                ));
            }
            hash.update(&chunk);
            f.write_all(&chunk).await.map_err(ioerr)?;
        }
        f.sync_all().await.map_err(ioerr)?;
        drop(f);
        let sha256 = hex::encode(hash.finalize());
        let path = tmp.to_owned();
        let format = BundleFormat::sniff(&head);
        let (rauc, sha) = (self.rauc.clone(), sha256.clone());
        let checked =
            tokio::task::spawn_blocking(move || -> Result<(Manifest, Option<String>), String> {
                match format {
                    BundleFormat::Gota => check_gota(&path).map(|m| (m, None)),
                    BundleFormat::Raucb => check_raucb(&rauc, &path, size, &sha)
                        .map(|(m, c)| (m, Some(c)))
                        .map_err(|e| format!("RAUC bundle: {e}")),
                }
            })
            .await
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("bundle refused: {e}"),
                )
            })?;
        let (checked, rauc_compatible) = checked;
        let name = format!(
            "{}-{}.{}",
            checked.version,
            &sha256[..12],
            format.extension()
        );
        let published = PublishedBundle {
            name: name.clone(),
            format,
            rauc_compatible,
            size,
            sha256,
            manifest: checked,
        };
        tokio::fs::rename(tmp, self.dir.join(&name))
            .await
            .map_err(ioerr)?;
        let sidecar = serde_json::to_vec_pretty(&published).unwrap_or_default();
        tokio::fs::write(self.dir.join(format!("{name}.json")), sidecar)
            .await
            .map_err(ioerr)?;
        tracing::info!(bundle = %name, "bundle published");
        Ok(published)
    }
}

/// A `gavelctl ota build` bundle: signed, manifest valid, payload as the manifest says.
fn check_gota(path: &Path) -> Result<Manifest, String> {
    let b = Bundle::open(path).map_err(|e| e.to_string())?;
    if b.signature == UNSIGNED {
        return Err("bundle is not signed (run `gavelctl ota sign` first)".into());
    }
    let m = Manifest::from_json(&b.manifest_bytes).map_err(|e| e.to_string())?;
    b.check_payload(&m).map_err(|e| e.to_string())?;
    Ok(m)
}

/// A RAUC bundle: its manifest read by `rauc info --no-verify` (container and manifest
/// must be sound; the signature is the device's to check), its version MAJOR.MINOR.PATCH,
/// its `compatible` a Gavel profile. Returns the manifest in Gavel's shape and the
/// `compatible`.
fn check_raucb(
    rauc: &Rauc,
    path: &Path,
    size: u64,
    sha256: &str,
) -> Result<(Manifest, String), String> {
    let info = rauc.info_unverified(path).map_err(|e| match e {
        RaucError::Spawn { .. } => {
            format!("{e} (the controller reads .raucb bundles with `rauc`: apt-get install rauc)")
        }
        // Not the upload's temporary path: what RAUC found wrong.
        RaucError::Failed { stderr, .. } => format!("`rauc info` cannot read it: {stderr}"),
        RaucError::Output { reason, .. } => reason,
    })?;
    let version: Version = info.version.parse().map_err(|_| {
        format!(
            "manifest version {:?} is not MAJOR.MINOR.PATCH (devices compare versions to refuse downgrades)",
            info.version
        )
    })?;
    let profile = profile_for_compatible(&info.compatible)?;
    let m = Manifest {
        format: MANIFEST_FORMAT,
        version,
        compatible: vec![profile.to_owned()],
        min_version: None,
        image: ImageInfo {
            size,
            sha256: sha256.to_owned(),
        },
        payload: PayloadInfo {
            encoding: Encoding::Full,
            size,
            sha256: sha256.to_owned(),
        },
        delta_base: None,
        description: Some(format!("RAUC bundle for {}", info.compatible)),
    };
    m.validate().map_err(|e| e.to_string())?;
    Ok((m, info.compatible))
}

/// The OTA routes, under `/api/v1/ota`.
pub fn routes(repo: BundleRepo) -> Router {
    Router::new()
        .route("/api/v1/ota/bundles", get(list).post(publish))
        .route("/api/v1/ota/bundles/{name}", get(serve))
        .with_state(repo)
}

#[utoipa::path(get, path = "/api/v1/ota/bundles", responses((status = 200, body = [PublishedBundle])))]
pub async fn list(State(repo): State<BundleRepo>) -> Response {
    match repo.list() {
        Ok(v) => Json(v).into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[utoipa::path(post, path = "/api/v1/ota/bundles", request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = PublishedBundle), (status = 422, description = "Not a valid signed bundle", body = ApiErrorBody)))]
pub async fn publish(State(repo): State<BundleRepo>, body: Body) -> Response {
    match repo.publish(body).await {
        Ok(p) => (StatusCode::CREATED, Json(p)).into_response(),
        Err(r) => r,
    }
}

/// Serves a bundle file; honours `Range` (206 Partial Content) so downloads resume.
#[utoipa::path(get, path = "/api/v1/ota/bundles/{name}", params(("name" = String, Path, description = "Bundle file name")),
    responses((status = 200, description = "The bundle"), (status = 206, description = "A range of it"), (status = 404, body = ApiErrorBody)))]
pub async fn serve(
    State(repo): State<BundleRepo>,
    UrlPath(name): UrlPath<String>,
    req: Request,
) -> Response {
    if !BundleRepo::valid_name(&name) || !(name.ends_with(".gota") || name.ends_with(".raucb")) {
        return err(StatusCode::BAD_REQUEST, format!("bad bundle name {name:?}"));
    }
    let path = repo.dir.join(&name);
    if !path.is_file() {
        return err(StatusCode::NOT_FOUND, format!("no bundle {name}"));
    }
    match ServeFile::new(path).oneshot(req).await {
        Ok(r) => r.into_response(),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
