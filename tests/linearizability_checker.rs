//! Unit tests of the linearizability checker on known legal and illegal histories.

#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::linearizability::{check_kv, Input, Operation, Verdict};

fn op(client: usize, input: Input, output: Option<&str>, call: u64, ret: u64) -> Operation {
    Operation {
        client,
        input,
        output: output.map(String::from),
        call,
        ret: Some(ret),
    }
}
fn get(k: &str) -> Input {
    Input::Get(k.into())
}
fn put(k: &str, v: &str) -> Input {
    Input::Put(k.into(), v.into())
}
fn append(k: &str, v: &str) -> Input {
    Input::Append(k.into(), v.into())
}
const T: Duration = Duration::from_secs(5);

#[test]
fn a_sequential_history_is_linearizable() {
    let h = vec![
        op(0, put("x", "1"), None, 0, 10),
        op(0, get("x"), Some("1"), 20, 30),
        op(1, append("x", "2"), None, 40, 50),
        op(1, get("x"), Some("12"), 60, 70),
        op(1, get("y"), None, 80, 90),
    ];
    assert_eq!(check_kv(&h, T), Verdict::Linearizable);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in ["0", "1"] {
        let h = vec![
            op(0, put("x", "0"), None, 0, 10),
            op(1, put("x", "1"), None, 20, 50),
            op(2, get("x"), Some(seen), 25, 40),
        ];
        assert_eq!(check_kv(&h, T), Verdict::Linearizable, "saw {seen}");
    }
}

#[test]
fn a_stale_read_after_a_completed_write_is_illegal() {
    let h = vec![
        op(0, put("x", "0"), None, 0, 10),
        op(0, put("x", "1"), None, 20, 30),
        op(1, get("x"), Some("0"), 40, 50),
    ];
    assert_eq!(check_kv(&h, T), Verdict::Illegal);
}

#[test]
fn reads_cannot_go_back_in_time() {
    // Two reads during one write: once one sees the new value, a later one
    // (which starts after it ended) must not see the old.
    let h = vec![
        op(0, put("x", "0"), None, 0, 10),
        op(1, put("x", "1"), None, 20, 100),
        op(2, get("x"), Some("1"), 30, 40),
        op(3, get("x"), Some("0"), 50, 60),
    ];
    assert_eq!(check_kv(&h, T), Verdict::Illegal);
}

#[test]
fn an_append_applied_twice_is_illegal() {
    let h = vec![
        op(0, append("x", "a"), None, 0, 10),
        op(1, get("x"), Some("aa"), 20, 30),
    ];
    assert_eq!(check_kv(&h, T), Verdict::Illegal);
}

#[test]
fn an_unknown_outcome_may_take_effect_late_or_never() {
    let pending = Operation {
        client: 0,
        input: put("x", "1"),
        output: None,
        call: 10,
        ret: None,
    };
    let seen_late = vec![
        pending.clone(),
        op(1, get("x"), None, 20, 30),
        op(1, get("x"), Some("1"), 400, 500),
    ];
    assert_eq!(check_kv(&seen_late, T), Verdict::Linearizable);
    let never_seen = vec![pending, op(1, get("x"), None, 20, 30)];
    assert_eq!(check_kv(&never_seen, T), Verdict::Linearizable);
}

#[test]
fn keys_are_checked_independently_and_any_bad_key_fails() {
    let h = vec![
        op(0, put("a", "1"), None, 0, 10),
        op(0, put("b", "1"), None, 0, 10),
        op(1, get("a"), Some("1"), 20, 30),
        op(1, get("b"), Some("2"), 20, 30),
    ];
    assert_eq!(check_kv(&h, T), Verdict::Illegal);
}

#[test]
fn many_concurrent_appends_are_checked_quickly() {
    // 8 clients × 12 appends, all concurrent in waves, then a read that
    // sees one legal order: the memoization keeps this fast.
    let mut h = Vec::new();
    let mut expected = String::new();
    for wave in 0..12u64 {
        for c in 0..8usize {
            let v = format!("[{c}.{wave}]");
            h.push(op(c, append("k", &v), None, wave * 100, wave * 100 + 50));
            expected.push_str(&v);
        }
    }
    h.push(op(9, get("k"), Some(&expected), 2000, 2100));
    assert_eq!(check_kv(&h, T), Verdict::Linearizable);
}

#[test]
fn an_order_no_interleaving_allows_is_illegal() {
    // Client 0's appends are sequential, so "b" cannot precede "a".
    let h = vec![
        op(0, append("k", "a"), None, 0, 10),
        op(0, append("k", "b"), None, 20, 30),
        op(1, append("k", "c"), None, 0, 30),
        op(2, get("k"), Some("cba"), 40, 50),
    ];
    assert_eq!(check_kv(&h, T), Verdict::Illegal);
    let legal = vec![
        h[0].clone(),
        h[1].clone(),
        h[2].clone(),
        op(2, get("k"), Some("acb"), 40, 50),
    ];
    assert_eq!(check_kv(&legal, T), Verdict::Linearizable);
}
