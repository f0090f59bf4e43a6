//! Property tests on decoding: no input makes a decoder panic, and every valid message
//! survives encode/decode unchanged.

use gavel_protocol::{
    Ack, Birth, Clock, Command, Event, EventBody, Health, Memory, PROTOCOL_VERSION, Phase, Receipt,
    Status, Volume, decode, decode_device_message, encode,
};
use proptest::prelude::*;
use time::OffsetDateTime;

fn any_ts() -> impl Strategy<Value = OffsetDateTime> {
    // 2000-01-01 .. 2100-01-01, whole seconds and some nanoseconds.
    (946_684_800i64..4_102_444_800i64, 0u32..1_000_000_000).prop_map(|(s, n)| {
        OffsetDateTime::from_unix_timestamp(s)
            .map(|t| t + time::Duration::nanoseconds(i64::from(n)))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    })
}

fn text() -> impl Strategy<Value = String> {
    "[\\PC]{0,40}"
}

fn any_event() -> impl Strategy<Value = Event> {
    (
        any_ts(),
        "[a-z0-9-]{1,36}",
        any::<u64>(),
        text(),
        prop_oneof![Just(Phase::Start), Just(Phase::Update), Just(Phase::End)],
        any::<bool>(),
        prop_oneof![
            any::<u64>().prop_map(|n| EventBody::Probe { n }),
            proptest::option::of(text()).prop_map(|detail| EventBody::Agent { detail }),
        ],
    )
        .prop_map(|(ts, boot_id, seq, id, phase, historical, body)| Event {
            v: PROTOCOL_VERSION,
            ts,
            boot_id,
            seq,
            id,
            phase,
            historical,
            body,
        })
}

fn any_health() -> impl Strategy<Value = Health> {
    (
        any_ts(),
        any::<u64>(),
        0.0f64..=100.0,
        0.0f64..1000.0,
        (any::<u64>(), any::<u64>()),
        proptest::collection::vec(("/[a-z]{0,10}", any::<u64>(), any::<u64>()), 0..5),
        any::<bool>(),
    )
        .prop_map(|(ts, up, cpu, load, (mt, mu), vols, synced)| Health {
            v: PROTOCOL_VERSION,
            ts,
            uptime_s: up,
            agent_uptime_s: up / 2,
            cpu_percent: cpu,
            load1: load,
            memory: Memory {
                total_bytes: mt,
                used_bytes: mu,
            },
            volumes: vols
                .into_iter()
                .map(|(mount, a, b)| Volume {
                    mount,
                    total_bytes: a.max(b),
                    free_bytes: a.min(b),
                })
                .collect(),
            temperatures: vec![],
            humidity: vec![],
            clock: Clock {
                synced,
                offset_ms: synced.then_some(0.5),
                max_error_ms: None,
            },
            outbox: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode::<Birth>(&bytes);
        let _ = decode::<Status>(&bytes);
        let _ = decode::<Health>(&bytes);
        let _ = decode::<Event>(&bytes);
        let _ = decode::<Ack>(&bytes);
        let _ = decode::<Command>(&bytes);
        let _ = decode::<Receipt>(&bytes);
    }

    #[test]
    fn arbitrary_topics_and_payloads_are_refused_with_a_kind(topic in "[\\PC/+#]{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = decode_device_message(&topic, &bytes) {
            prop_assert!(!e.kind().is_empty());
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn json_objects_with_random_fields_are_refused_not_panicking(
        fields in proptest::collection::btree_map("[a-z_]{1,12}", prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ], 0..12)
    ) {
        let mut obj: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
        obj.insert("v".into(), 1.into());
        let bytes = serde_json::to_vec(&obj).expect("json");
        let _ = decode::<Event>(&bytes);
        let _ = decode::<Health>(&bytes);
        let _ = decode::<Birth>(&bytes);
    }

    #[test]
    fn any_valid_event_round_trips(event in any_event()) {
        let back: Event = decode(&encode(&event)).expect("valid event decodes");
        prop_assert_eq!(back, event);
    }

    #[test]
    fn any_valid_health_round_trips(health in any_health()) {
        let back: Health = decode(&encode(&health)).expect("valid health decodes");
        prop_assert_eq!(back, health);
    }
}
