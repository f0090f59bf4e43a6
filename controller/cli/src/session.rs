//! The technician's sign-in: `gavelctl login` keeps the session token in
//! `$XDG_CONFIG_HOME/gavel/session.json` (or `~/.config/gavel/session.json`, mode 0600),
//! for one controller. `GAVEL_TOKEN` in the environment wins over the file.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A saved sign-in.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    pub controller: String,
    pub user: String,
    pub role: String,
    pub token: String,
    pub expires_at: String,
}

fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("gavel").join("session.json"))
}

/// The token to send to `controller`, if any.
pub fn token_for(controller: &str) -> Option<String> {
    if let Ok(t) = std::env::var("GAVEL_TOKEN")
        && !t.trim().is_empty()
    {
        return Some(t.trim().to_string());
    }
    let text = std::fs::read_to_string(path()?).ok()?;
    let saved: Saved = serde_json::from_str(&text).ok()?;
    (saved.controller == controller).then_some(saved.token)
}

/// Saves a sign-in (0600).
pub fn save(saved: &Saved) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = path().context("no home folder to keep the session in; use GAVEL_TOKEN")?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    f.write_all(serde_json::to_string_pretty(saved)?.as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// Forgets the saved sign-in.
pub fn forget() {
    if let Some(p) = path() {
        let _ = std::fs::remove_file(p);
    }
}
