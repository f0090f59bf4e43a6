//! The video wall's configuration message: golden fixture, round trip and refusals that
//! name the field.

use std::path::PathBuf;

use gavel_protocol::{
    Channel, DecodeError, DeviceId, Message, Wall, WallLayout, decode, encode, filter,
};

fn fixture() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/wall.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn wall() -> Wall {
    decode(&fixture()).expect("fixture decodes")
}

#[test]
fn wall_fixture_round_trips() {
    let bytes = fixture();
    let w: Wall = decode(&bytes).expect("decodes");
    let again: serde_json::Value = serde_json::from_slice(&encode(&w)).expect("json");
    let original: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(again, original);
    assert_eq!(decode::<Wall>(&encode(&w)).expect("re-decodes"), w);
    assert_eq!(w.layout, WallLayout::FocusPlus5);
    assert_eq!(w.sources.len(), 3);
    assert_eq!(
        w.sources[0].stream_url(),
        "rtsp://10.0.1.10:8554/cam-overview/sub"
    );
    assert_eq!(
        w.sources[1].stream_url(),
        "rtsp://10.0.2.10:8554/cam-overview/main"
    );
    assert_eq!(
        w.sources[0].label(),
        "hz-intermediate · room-101 · (2026)浙0106民初1234号"
    );
    assert_eq!(w.focus.as_ref().map(|f| f.room.as_str()), Some("room-102"));
}

#[test]
fn the_wall_channel_is_retained_from_the_controller_on_the_devices_own_prefix() {
    assert_eq!(Wall::CHANNEL, Channel::Wall);
    assert!(Channel::Wall.retained());
    assert!(!Channel::Wall.from_device());
    let dev = DeviceId::new("wall-1").expect("id");
    assert_eq!(filter::wall_config(&dev), "gavel/v1/dev/wall-1/wall");
}

#[test]
fn every_layout_has_its_name_and_tile_count() {
    let names: Vec<(&str, usize)> = WallLayout::ALL
        .iter()
        .map(|l| (l.as_str(), l.tiles()))
        .collect();
    assert_eq!(names, [("1", 1), ("2x2", 4), ("3x3", 9), ("1+5", 6)]);
    for l in WallLayout::ALL {
        assert_eq!(WallLayout::parse(l.as_str()), Some(l));
    }
    assert_eq!(WallLayout::parse("4x4"), None);
}

fn refused(w: &Wall) -> String {
    match decode::<Wall>(&encode(w)) {
        Err(DecodeError::Invalid { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_wall_with_a_bad_address_a_duplicate_room_or_a_foreign_focus_names_the_field() {
    let mut w = wall();
    w.sources[1].url = "http://cam/x".into();
    assert_eq!(refused(&w), "sources[1].url");

    let mut w = wall();
    w.sources[0].sub_url = Some("rtsp://a b".into());
    assert_eq!(refused(&w), "sources[0].sub_url");

    let mut w = wall();
    w.sources[2].room = "room-101".into();
    assert_eq!(refused(&w), "sources[2].room");

    let mut w = wall();
    if let Some(f) = w.focus.as_mut() {
        f.room = "room-999".into();
    }
    assert_eq!(refused(&w), "focus.room");

    let mut w = wall();
    let extra = w.sources[0].clone();
    w.sources = (0..17)
        .map(|i| {
            let mut s = extra.clone();
            s.room = format!("room-{i}");
            s
        })
        .collect();
    w.focus = None;
    assert_eq!(refused(&w), "sources");
}

#[test]
fn an_unknown_layout_is_refused_by_the_schema() {
    let text = String::from_utf8(fixture())
        .expect("utf8")
        .replace("\"1+5\"", "\"4x4\"");
    let err = decode::<Wall>(text.as_bytes()).expect_err("refused");
    assert!(matches!(err, DecodeError::Schema { .. }), "{err}");
    assert!(err.to_string().contains("4x4"), "{err}");
}
