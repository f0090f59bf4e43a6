//! Every way a payload can be wrong yields its own typed error, never a panic.

use gavel_protocol::{
    Birth, DecodeError, Health, IngestError, MAX_PAYLOAD, decode, decode_device_message,
};

fn health_with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/health.json")).expect("fixture");
    edit(&mut v);
    serde_json::to_vec(&v).expect("json")
}

#[test]
fn oversized_payload_is_refused_before_parsing() {
    let big = vec![b' '; MAX_PAYLOAD + 1];
    assert!(matches!(
        decode::<Health>(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn bad_json_names_line_and_column() {
    let err = decode::<Health>(b"{\"v\": 1,\n \"ts\": }").expect_err("bad json");
    match err {
        DecodeError::Json { line, .. } => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode::<Health>(&[0xff, 0xfe, 0x00]),
        Err(DecodeError::Json { .. })
    ));
}

#[test]
fn non_object_payloads_say_what_they_were() {
    let err = decode::<Health>(b"[1,2]").expect_err("array");
    assert_eq!(err.to_string(), "payload is an array, not a JSON object");
}

#[test]
fn missing_and_unknown_versions_are_distinguished() {
    let missing = health_with(|v| {
        v.as_object_mut().expect("obj").remove("v");
    });
    assert_eq!(decode::<Health>(&missing), Err(DecodeError::MissingVersion));
    let future = health_with(|v| v["v"] = 2.into());
    assert!(matches!(
        decode::<Health>(&future),
        Err(DecodeError::UnsupportedVersion { found }) if found == "2"
    ));
    let text = health_with(|v| v["v"] = "1".into());
    assert!(matches!(
        decode::<Health>(&text),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn wrong_types_and_missing_fields_name_the_field() {
    let wrong = health_with(|v| v["uptime_s"] = "soon".into());
    let err = decode::<Health>(&wrong)
        .expect_err("wrong type")
        .to_string();
    assert!(err.contains("invalid type"), "{err}");
    let missing = health_with(|v| {
        v.as_object_mut().expect("obj").remove("memory");
    });
    let err = decode::<Health>(&missing).expect_err("missing").to_string();
    assert!(err.contains("memory"), "{err}");
}

#[test]
fn out_of_range_values_name_the_field() {
    let hot = health_with(|v| v["cpu_percent"] = 250.0.into());
    assert!(matches!(
        decode::<Health>(&hot),
        Err(DecodeError::Invalid { field, .. }) if field == "cpu_percent"
    ));
    let disk = health_with(|v| v["volumes"][0]["free_bytes"] = u64::MAX.into());
    assert!(matches!(
        decode::<Health>(&disk),
        Err(DecodeError::Invalid { field, .. }) if field == "volumes[0].free_bytes"
    ));
    let wet = health_with(|v| {
        v["humidity"] = serde_json::json!([{ "sensor": "machine-room", "percent": 140.0 }])
    });
    assert!(matches!(
        decode::<Health>(&wet),
        Err(DecodeError::Invalid { field, .. }) if field == "humidity[0].percent"
    ));
}

#[test]
fn huge_strings_inside_the_size_limit_are_refused_by_field() {
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/birth.json")).expect("fixture");
    v["hostname"] = "h".repeat(10_000).into();
    let err = decode::<Birth>(&serde_json::to_vec(&v).expect("json")).expect_err("long");
    assert!(
        matches!(err, DecodeError::Invalid { ref field, .. } if field == "hostname"),
        "{err}"
    );
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    let deep = &deep.as_bytes()[..MAX_PAYLOAD.min(deep.len())];
    assert!(decode::<Health>(deep).is_err());
}

#[test]
fn commands_published_by_a_device_are_refused() {
    let err = decode_device_message(
        "gavel/v1/dev/a/cmd",
        include_bytes!("../fixtures/command-ping.json"),
    )
    .expect_err("wrong direction");
    assert_eq!(err.kind(), "wrong_direction");
}

#[test]
fn unknown_event_types_are_schema_errors() {
    let payload =
        br#"{"v":1,"ts":"2026-11-27T09:00:00Z","seq":1,"id":"x","phase":"end","type":"teleport"}"#;
    let err = decode_device_message("gavel/v1/dev/a/event", payload).expect_err("unknown");
    assert!(
        matches!(err, IngestError::Payload(DecodeError::Schema { .. })),
        "{err}"
    );
}
