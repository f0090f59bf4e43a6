//! Property test: the outbox behaves like a simple model (a list of (boot, seq) in append
//! order) under any mix of appends, confirmations and reopenings.

use gavel_store::{OutboxEntry, Store};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append { boot: u8 },
    Confirm { boot: u8, through: u64 },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3).prop_map(|boot| Op::Append { boot }),
        2 => (0u8..3, 0u64..20).prop_map(|(boot, through)| Op::Confirm { boot, through }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_outbox_matches_its_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("o.redb");
        let mut store = Store::open(&path).expect("open");
        let mut model: Vec<(String, u64)> = Vec::new();
        let mut next_seq = [0u64; 3];
        let mut last_key: Option<u64> = None;
        for op in ops {
            match op {
                Op::Append { boot } => {
                    let b = format!("boot-{boot}");
                    let seq = next_seq[boot as usize];
                    next_seq[boot as usize] += 1;
                    let key = store
                        .append(&OutboxEntry { boot_id: b.clone(), seq, appended_ms: 0, payload: vec![boot] })
                        .expect("append");
                    prop_assert!(last_key.is_none_or(|k| key > k), "keys must grow");
                    last_key = Some(key);
                    model.push((b, seq));
                }
                Op::Confirm { boot, through } => {
                    let b = format!("boot-{boot}");
                    let before = model.len();
                    model.retain(|(mb, ms)| !(mb == &b && *ms <= through));
                    let removed = store.confirm(&b, through).expect("confirm");
                    prop_assert_eq!(removed, before - model.len());
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(&path).expect("reopen");
                }
            }
            let actual: Vec<(String, u64)> = store
                .entries_from(0, usize::MAX)
                .expect("read")
                .into_iter()
                .map(|(_, e)| (e.boot_id, e.seq))
                .collect();
            prop_assert_eq!(&actual, &model);
            prop_assert_eq!(store.stats().expect("stats").depth, model.len() as u64);
        }
    }
}
