//! `gavel-agent cameras`: the technician finds the room's ONVIF cameras and writes them
//! into the device configuration, so nobody types stream addresses by hand.
//!
//! Discovery and configuration are `gavel_devices::onvif`; this module assigns the
//! configured cameras to the profile's sources (`[media.<source>]` in the agent config,
//! comments and other settings kept) and keeps the ONVIF details (model, serial, profiles,
//! PTZ service, clock check) in `<data_dir>/cameras.json` for PTZ presets.

use std::path::Path;

use anyhow::{Context, bail};
use gavel_devices::onvif::{CameraConfig, Credentials};

/// File (in the data folder) with the configured cameras, by source id.
pub const CAMERAS_FILE: &str = "cameras.json";

/// The stream a source records: the camera's first profile (its main stream), with the
/// credentials in the URL (the recorder's RTSP source authenticates with them).
pub fn record_url(camera: &CameraConfig, creds: &Credentials) -> anyhow::Result<String> {
    let main = camera
        .profiles
        .first()
        .with_context(|| format!("camera {} has no media profile", camera.device_url))?;
    let mut url = url::Url::parse(&main.uri)
        .with_context(|| format!("camera {}: stream URI {:?}", camera.device_url, main.uri))?;
    if url.scheme() != "rtsp" && url.scheme() != "rtsps" {
        bail!(
            "camera {}: stream URI {:?} is not RTSP",
            camera.device_url,
            main.uri
        );
    }
    url.set_username(&creds.user)
        .and_then(|()| url.set_password(Some(&creds.password)))
        .map_err(|()| {
            anyhow::anyhow!(
                "camera {}: cannot put credentials in {:?}",
                camera.device_url,
                main.uri
            )
        })?;
    Ok(url.to_string())
}

/// Writes `[media.<source>] kind = "rtsp", url = ...` for each camera into the agent
/// config file at `path` (created when missing), keeping everything else in it.
pub fn write_media(path: &Path, sources: &[(String, String)]) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    if !doc.contains_key("media") {
        let mut t = toml_edit::Table::new();
        t.set_implicit(true);
        doc.insert("media", toml_edit::Item::Table(t));
    }
    let media = doc["media"]
        .as_table_mut()
        .with_context(|| format!("{}: `media` is not a table", path.display()))?;
    for (source, url) in sources {
        let mut t = toml_edit::Table::new();
        t.insert("kind", toml_edit::value("rtsp"));
        t.insert("url", toml_edit::value(url.as_str()));
        media.insert(source, toml_edit::Item::Table(t));
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Stores the cameras' ONVIF details by source id (merged with what is there).
pub fn write_details(data_dir: &Path, cameras: &[(String, CameraConfig)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(CAMERAS_FILE);
    let mut all: std::collections::BTreeMap<String, CameraConfig> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a cameras file", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    for (source, c) in cameras {
        all.insert(source.clone(), c.clone());
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// The configured camera of `source` (from `<data_dir>/cameras.json`).
pub fn load(data_dir: &Path, source: &str) -> anyhow::Result<CameraConfig> {
    let path = data_dir.join(CAMERAS_FILE);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (configure the cameras first: gavel-agent cameras configure)",
            path.display()
        )
    })?;
    let mut all: std::collections::BTreeMap<String, CameraConfig> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a cameras file", path.display()))?;
    all.remove(source).with_context(|| {
        format!(
            "no camera configured for source {source:?} in {}",
            path.display()
        )
    })
}

/// Parses `SOURCE=URL`.
pub fn parse_assignment(s: &str) -> Result<(String, String), String> {
    let (source, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected SOURCE=DEVICE-SERVICE-URL"))?;
    if source.is_empty() || url.is_empty() {
        return Err(format!("{s:?}: expected SOURCE=DEVICE-SERVICE-URL"));
    }
    Ok((source.to_owned(), url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_devices::onvif::{ClockCheck, StreamProfile};

    fn camera(uri: &str) -> CameraConfig {
        CameraConfig {
            device_url: "http://10.0.0.5/onvif/device_service".into(),
            manufacturer: "HIKVISION".into(),
            model: "DS-2DE".into(),
            firmware: "V5".into(),
            serial: "S1".into(),
            profiles: vec![StreamProfile {
                token: "Profile_1".into(),
                name: "mainStream".into(),
                uri: uri.into(),
                ptz: true,
            }],
            ptz_url: None,
            clock: ClockCheck {
                camera_utc: None,
                offset_s: 0,
                in_tolerance: true,
            },
        }
    }

    #[test]
    fn the_main_stream_is_recorded_with_the_credentials_in_its_url() {
        let creds = Credentials {
            user: "gavel".into(),
            password: "p@ss:word".into(),
        };
        let url = record_url(
            &camera("rtsp://10.0.0.5:554/Streaming/Channels/101"),
            &creds,
        )
        .expect("url");
        assert_eq!(
            url,
            "rtsp://gavel:p%40ss%3Aword@10.0.0.5:554/Streaming/Channels/101"
        );
        let err = record_url(&camera("http://10.0.0.5/x"), &creds).expect_err("not rtsp");
        assert!(err.to_string().contains("is not RTSP"), "{err}");
    }

    #[test]
    fn media_entries_are_written_and_the_rest_of_the_config_is_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "# the terminal of room 101\ndevice_id = \"room-101-terminal\"\n\n[media.mics]\nkind = \"alsa\"\ndevice = \"hw:1\"\nchannels = 4\n",
        )
        .expect("write");
        write_media(
            &path,
            &[("cam-judge".into(), "rtsp://u:p@10.0.0.6/main".into())],
        )
        .expect("write media");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# the terminal of room 101\n"), "{text}");
        let config = crate::AgentConfig::from_file(&path).expect("still a valid agent config");
        assert_eq!(config.device_id, "room-101-terminal");
        assert_eq!(config.media.len(), 2);
        assert!(matches!(
            config.media.get("cam-judge"),
            Some(gavel_record::SourceInput::Rtsp { url, .. }) if url == "rtsp://u:p@10.0.0.6/main"
        ));
        std::fs::write(&path, "media = 3\n").expect("write");
        let err = write_media(&path, &[("cam".into(), "rtsp://x/y".into())]).expect_err("refused");
        assert!(err.to_string().contains("`media` is not a table"), "{err}");
    }

    #[test]
    fn assignments_are_source_equals_url() {
        assert_eq!(
            parse_assignment("cam-judge=http://10.0.0.6/onvif/device_service"),
            Ok((
                "cam-judge".into(),
                "http://10.0.0.6/onvif/device_service".into()
            ))
        );
        assert!(parse_assignment("cam-judge").is_err());
        assert!(parse_assignment("=http://x").is_err());
    }
}
