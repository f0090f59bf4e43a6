//! Loads every profile shipped in `device-profiles/`.

use std::path::PathBuf;

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../device-profiles")
}

#[test]
fn every_shipped_profile_loads_and_validates() {
    let profiles = gavel_profile::load_dir(&profiles_dir()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "audio-host",
            "command-wall",
            "courtroom-terminal",
            "ip-camera",
            "service-kiosk"
        ]
    );
}

#[test]
fn the_courtroom_terminal_records_and_labels_seats() {
    let p = gavel_profile::load_named(&profiles_dir(), "courtroom-terminal").expect("loads");
    assert!(p.capabilities.record.is_some());
    assert!(p.seats.iter().any(|s| s.id == "judge"));
}

#[test]
fn an_unknown_profile_name_is_not_found() {
    let err = gavel_profile::load_named(&profiles_dir(), "../etc/passwd").expect_err("refused");
    assert!(err.to_string().contains("not found"), "{err}");
}
