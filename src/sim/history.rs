//! The end-of-run checks on what the clients saw.
//!
//! The KV operations must be linearizable (§8; the checker in
//! [`super::linearizability`]), with a final read of every key from the server
//! that applied the most, so a lost write cannot hide. Each APPEND must have
//! taken effect at most once, an acknowledged one exactly once (thesis §6.3).

use std::collections::BTreeMap;

use super::clients::Record;
use super::invariants::Violation;
use super::linearizability::{check_kv, CasOutcome, Input, Operation, Value, Verdict};
use super::world::World;
use crate::service::command::Command;
use crate::service::reply::Reply;
use crate::service::txn::{OpResult, Target, TxnOp};

/// Search steps the end-of-run linearizability check may take.
const LINEARIZABILITY_STEPS: u64 = 50_000_000;

impl World {
    /// The history checks: linearizable KV operations (with a final read of
    /// every key at the end), and appends applied exactly once.
    pub(super) fn final_checks(&mut self) -> Result<(), Violation> {
        self.stats.virtual_time = self.now;
        self.stats.ops_unknown = self.history.iter().filter(|r| r.ret.is_none()).count() as u64;
        let Some((node, _)) = self.most_applied() else {
            return Ok(());
        };
        let Some(running) = self.nodes[node].running.as_ref() else {
            return Ok(());
        };
        let kv = running.applier.state_machine().kv();
        let mut operations = kv_operations(&self.history);
        let reader = self.clients.len();
        let keys: Vec<String> = (0..self.knobs.keys).map(|k| format!("k{k}")).collect();
        let value = |key: &str| kv.value(key.as_bytes()).map(|v| text(v));
        for key in &keys {
            operations.push(Operation {
                client: reader,
                input: Input::Get(key.clone()),
                output: value(key).map(Value::from),
                call: self.now,
                ret: Some(self.now),
            });
        }
        for key in &keys {
            appends_apply_once(key, &value(key).unwrap_or_default(), &self.history)?;
        }
        match check_kv(&operations, LINEARIZABILITY_STEPS) {
            Verdict::Linearizable => Ok(()),
            verdict => Err(Violation {
                invariant: "linearizability",
                rule: "§8: every operation appears to take effect once, between its call and its reply",
                evidence: format!(
                    "the checker says {verdict:?} for {} KV operations (final reads from node {})",
                    operations.len(),
                    node + 1
                ),
            }),
        }
    }
}

/// Thesis §6.3: each APPEND a client made takes effect at most once, and an
/// acknowledged one exactly once (unless a PUT of the key may have erased it).
fn appends_apply_once(key: &str, value: &str, history: &[Record]) -> Result<(), Violation> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for token in value.split_terminator(';') {
        *counts.entry(token).or_default() += 1;
    }
    // A Put or a swap of the key may have erased appends.
    let overwritten = history.iter().any(|r| match &r.op.command {
        Command::Put(k, _) => k == key.as_bytes(),
        Command::Txn(t) => t.compares.iter().any(|c| c.key == key.as_bytes()),
        _ => false,
    });
    for record in history {
        let Command::Append(k, v) = &record.op.command else {
            continue;
        };
        if k != key.as_bytes() {
            continue;
        }
        let v = text(v);
        let token = v.trim_end_matches(';');
        let seen = counts.get(token).copied().unwrap_or(0);
        let acked = record.reply == Some(Reply::Ok);
        if seen > 1 || (acked && seen == 0 && !overwritten) {
            return Err(Violation {
                invariant: "appends_apply_once",
                rule: "thesis §6.3: exactly-once client commands",
                evidence: format!(
                    "APPEND {key} {v} (client {}, {}) appears {seen} times in the final value",
                    record.client,
                    if acked {
                        "acknowledged"
                    } else {
                        "outcome unknown"
                    }
                ),
            });
        }
    }
    Ok(())
}

/// The KV operations of a history, for the linearizability checker.
pub(crate) fn kv_operations(history: &[Record]) -> Vec<Operation> {
    history
        .iter()
        .filter_map(|r| {
            let input = match &r.op.command {
                Command::Put(k, v) => Input::Put(text(k), text(v)),
                Command::Append(k, v) => Input::Append(text(k), text(v)),
                Command::Get(k) => Input::Get(text(k)),
                Command::Txn(_) => cas_input(r)?,
                _ => return None,
            };
            let output = match &r.reply {
                Some(Reply::Value(value)) => Some(Value::from(text(value))),
                _ => None,
            };
            Some(Operation {
                client: r.client,
                input,
                output,
                call: r.call,
                ret: r.ret,
            })
        })
        .collect()
}

/// Bytes the simulator's clients wrote (always UTF-8) as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A client's compare-and-swap (see `super::clients::cas`), with what its
/// reply said.
fn cas_input(r: &Record) -> Option<Input> {
    let Command::Txn(t) = &r.op.command else {
        return None;
    };
    let (Some(compare), Some(TxnOp::Put(_, new))) = (t.compares.first(), t.then.first()) else {
        return None;
    };
    let expected = match &compare.target {
        Target::Value(v) => Some(text(v)),
        _ => None,
    };
    let outcome = match &r.reply {
        Some(Reply::Txn(result)) if result.succeeded => CasOutcome::Swapped,
        Some(Reply::Txn(result)) => match result.results.first() {
            Some(OpResult::Get(page)) => CasOutcome::Failed(
                page.kvs
                    .first()
                    .and_then(|kv| kv.value.as_deref())
                    .map(|v| text(v)),
            ),
            _ => CasOutcome::Unknown,
        },
        _ => CasOutcome::Unknown,
    };
    Some(Input::Cas {
        key: text(&compare.key),
        expected,
        new: text(new),
        outcome,
    })
}
