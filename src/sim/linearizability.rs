//! A linearizability checker for key-value histories.
//!
//! Wing & Gong's search, with the memoization Lowe added and Porcupine uses, run
//! separately on each key (a history is linearizable iff each key's is: the
//! model is P-compositional). Operations become call and return events on a
//! timeline; the search repeatedly tries to linearize some pending call whose
//! effect matches the model, backtracking when a return is reached whose call
//! was not linearized. A (set of linearized operations, model state) pair that
//! has failed once is never explored again.
//!
//! Operations with unknown outcomes (the client gave up) return at "infinity":
//! they may take effect at any point after their call. Reads with unknown
//! outcomes are dropped, since they cannot have changed anything.
//!
//! A read's output is a [`Value`]: a prefix of a shared text, so that the
//! reads of a key that is only appended to can share one copy. A history of
//! n appends and reads of one key would otherwise hold O(n²) bytes: at a
//! few thousand operations a second, gigabytes within seconds.
//!
//! A compare-and-swap is one step of the model: at the point it takes
//! effect, its compare either holds (then it must have reported success, and
//! the key takes its new value) or not (then it must have reported failure,
//! and the value it read is the key's value at that point). One with an
//! unknown outcome does whichever its compare says at the point chosen.
//!
//! The search is bounded by a number of steps, not by wall-clock time, so its
//! verdict does not depend on how fast the machine is. Running out of steps is
//! [`Verdict::Unknown`], which callers treat as a failure: a checker that gives
//! up must never pass a history it did not check.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Read a key.
    Get(String),
    /// Set a key.
    Put(String, String),
    /// Append to a key.
    Append(String, String),
    /// Set a key to `new` if its value is `expected` (`None`: if it is
    /// absent), and what the client learned of the outcome.
    Cas {
        /// The key.
        key: String,
        /// The value compared with (`None`: the key must be absent).
        expected: Option<String>,
        /// The value set if the compare held.
        new: String,
        /// What the reply said.
        outcome: CasOutcome,
    },
}

/// What a compare-and-swap's reply said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The compare held: the key was set.
    Swapped,
    /// The compare failed, and the key's value was this (`None`: absent).
    Failed(Option<String>),
    /// No definite reply.
    Unknown,
}

impl Input {
    fn key(&self) -> &str {
        match self {
            Input::Get(k) | Input::Put(k, _) | Input::Append(k, _) => k,
            Input::Cas { key, .. } => key,
        }
    }
}

/// What a read returned: the first `len` bytes of a text that other reads
/// may share (see the module documentation). Compares as the string it is.
#[derive(Clone)]
pub struct Value {
    text: Arc<str>,
    len: usize,
}

impl Value {
    /// The first `len` bytes of `text`, if `len` is within it and on a
    /// character boundary.
    pub fn prefix(text: &Arc<str>, len: usize) -> Option<Value> {
        text.is_char_boundary(len).then(|| Value {
            text: Arc::clone(text),
            len,
        })
    }

    /// The value as a string.
    pub fn as_str(&self) -> &str {
        &self.text[..self.len]
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        let len = s.len();
        Value {
            text: s.into(),
            len,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value {
            text: s.into(),
            len: s.len(),
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Value {}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Operation {
    /// What this operation read, if it only read: a Get's output, a failed
    /// compare-and-swap's value.
    fn read(&self) -> Option<Option<&str>> {
        match &self.input {
            Input::Get(_) => Some(self.output.as_ref().map(Value::as_str)),
            Input::Cas {
                outcome: CasOutcome::Failed(read),
                ..
            } => Some(read.as_deref()),
            _ => None,
        }
    }

    /// The whole value this operation may write (Puts, and swaps that
    /// succeeded or may have).
    fn whole_value(&self) -> Option<&str> {
        match &self.input {
            Input::Put(_, v) => Some(v),
            Input::Cas {
                new,
                outcome: CasOutcome::Swapped | CasOutcome::Unknown,
                ..
            } => Some(new),
            _ => None,
        }
    }
}

/// One operation in a history, with its real-time interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it.
    pub client: usize,
    /// What it asked.
    pub input: Input,
    /// What a Get returned (`None`: key absent); ignored for writes (a
    /// compare-and-swap carries its outcome in its input).
    pub output: Option<Value>,
    /// When it was invoked (any monotonic unit).
    pub call: u64,
    /// When it returned, or `None` if its outcome is unknown.
    pub ret: Option<u64>,
}

/// The checker's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some linearization exists.
    Linearizable,
    /// No linearization exists: a real bug.
    Illegal,
    /// The search ran out of steps: nothing is known.
    Unknown,
}

/// A step budget generous enough for the histories the tests and the
/// simulator produce (a few seconds of search at most).
pub const DEFAULT_STEPS: u64 = 200_000_000;

/// Checks a whole history, key by key, taking at most `max_steps` search steps
/// overall.
pub fn check_kv(history: &[Operation], max_steps: u64) -> Verdict {
    let mut budget = max_steps;
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        let unknown_read = matches!(op.input, Input::Get(_)) && op.ret.is_none();
        if !unknown_read {
            by_key.entry(op.input.key()).or_default().push(op);
        }
    }
    let mut verdict = Verdict::Linearizable;
    for ops in by_key.values() {
        match check_one_key(ops, &mut budget) {
            Verdict::Illegal => return Verdict::Illegal,
            Verdict::Unknown => verdict = Verdict::Unknown,
            Verdict::Linearizable => {}
        }
    }
    verdict
}

/// The sequential model of one key, kept as one mutable value plus an
/// incremental hash, so a step costs O(size of the operation), not of the value.
struct KeyState {
    /// The value; `None` is "absent".
    value: Option<String>,
    /// Polynomial hash of the value (mod 2^61 - 1), extended as bytes are appended.
    hash: u64,
}

/// How to undo one step of the model.
enum Undo {
    /// A Get changed nothing.
    Nothing,
    /// An Append: cut the value back to this length and hash.
    Truncate(Option<usize>, u64),
    /// A Put: restore the previous value and hash.
    Restore(Option<String>, u64),
}

const MODULUS: u64 = (1 << 61) - 1;
const BASE: u64 = 1_000_003;

fn mul_mod(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(MODULUS)) as u64
}

fn extend_hash(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (mul_mod(h, BASE) + u64::from(b) + 1) % MODULUS;
    }
    h
}

impl KeyState {
    /// Applies `op` if the model allows it, returning how to undo it.
    fn step(&mut self, op: &Operation) -> Option<Undo> {
        match &op.input {
            Input::Get(_) => {
                let output = op.output.as_ref().map(Value::as_str);
                (output == self.value.as_deref()).then_some(Undo::Nothing)
            }
            Input::Put(_, v) => Some(self.set(v)),
            Input::Cas {
                expected,
                new,
                outcome,
                ..
            } => {
                let holds = *expected == self.value;
                match outcome {
                    CasOutcome::Swapped | CasOutcome::Unknown if holds => Some(self.set(new)),
                    CasOutcome::Failed(read) if !holds && *read == self.value => {
                        Some(Undo::Nothing)
                    }
                    CasOutcome::Unknown => Some(Undo::Nothing),
                    _ => None,
                }
            }
            Input::Append(_, v) => {
                let undo = Undo::Truncate(self.value.as_ref().map(String::len), self.hash);
                let value = self.value.get_or_insert_with(String::new);
                if undo_was_absent(&undo) {
                    self.hash = 1;
                }
                value.push_str(v);
                self.hash = extend_hash(self.hash, v.as_bytes());
                Some(undo)
            }
        }
    }

    /// Sets the whole value (a Put, a swap), returning how to undo it.
    fn set(&mut self, v: &str) -> Undo {
        let undo = Undo::Restore(self.value.replace(v.to_string()), self.hash);
        // Absent and empty differ: the hash of a present value starts at 1.
        self.hash = extend_hash(1, v.as_bytes());
        undo
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::Truncate(len, hash) => {
                match len {
                    Some(len) => {
                        if let Some(v) = self.value.as_mut() {
                            v.truncate(len);
                        }
                    }
                    None => self.value = None,
                }
                self.hash = hash;
            }
            Undo::Restore(value, hash) => {
                self.value = value;
                self.hash = hash;
            }
        }
    }

    /// Whether a later read could return `output`: the value so far is a
    /// prefix of it (only for keys whose value only grows).
    fn is_prefix_of(&self, output: Option<&str>) -> bool {
        match (&self.value, output) {
            (None, _) => true,
            (Some(v), Some(o)) => o.starts_with(v.as_str()),
            (Some(_), None) => false,
        }
    }

    /// The memo key of the state: hash and length (absent is length `u64::MAX`).
    fn key(&self) -> (u64, u64) {
        (
            self.hash,
            self.value.as_ref().map_or(u64::MAX, |v| v.len() as u64),
        )
    }
}

fn undo_was_absent(undo: &Undo) -> bool {
    matches!(undo, Undo::Truncate(None, _))
}

/// A node of the doubly linked event list; node 0 is the head sentinel.
#[derive(Clone, Copy)]
struct Node {
    prev: usize,
    next: usize,
    /// The operation this event belongs to.
    op: usize,
    /// For a call: its return event's node. For a return: `usize::MAX`.
    matching: usize,
}

const NIL: usize = usize::MAX;

fn check_one_key(ops: &[&Operation], budget: &mut u64) -> Verdict {
    // Events sorted by time; at equal times calls come first (more overlap is
    // the permissive reading of a tie).
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, i));
        events.push((op.ret.unwrap_or(u64::MAX), 1, i));
    }
    events.sort();
    let mut nodes = vec![
        Node {
            prev: NIL,
            next: NIL,
            op: NIL,
            matching: NIL,
        };
        events.len() + 1
    ];
    let mut call_node = vec![NIL; ops.len()];
    for (pos, &(_, kind, op)) in events.iter().enumerate() {
        let id = pos + 1;
        nodes[id].op = op;
        nodes[id].prev = pos;
        nodes[pos].next = id;
        if kind == 0 {
            call_node[op] = id;
        } else {
            nodes[call_node[op]].matching = id;
        }
    }
    let is_call = |nodes: &[Node], id: usize| nodes[id].matching != NIL;
    // Pruning: between two Puts a key's value only grows. So once a write is
    // linearized, a read still to come can return its value `o` only if the
    // current value is a prefix of `o`, or a Put still to come has a value that
    // is. Checking the read that must come first cuts orders of concurrent
    // writes that no later read could have seen, long before the search would
    // reach that read. `puts_under[r]`: the Puts whose value read `r`'s output
    // starts with.
    // (Whole values come from Puts and from compare-and-swaps.) Found by
    // looking up each read's prefixes of the lengths whole values have, not
    // by comparing every read with every write.
    let mut by_value: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in ops.iter().enumerate() {
        if let Some(v) = p.whole_value() {
            by_value.entry(v).or_default().push(i);
        }
    }
    let mut lengths: Vec<usize> = by_value.keys().map(|v| v.len()).collect();
    lengths.sort_unstable();
    lengths.dedup();
    let puts_under: Vec<Vec<usize>> = ops
        .iter()
        .map(|read| match read.read() {
            Some(Some(out)) => lengths
                .iter()
                .filter_map(|&l| out.get(..l))
                .filter_map(|prefix| by_value.get(prefix))
                .flatten()
                .copied()
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut done = vec![false; ops.len()];
    let first_pending_read = |nodes: &[Node]| {
        let mut id = nodes[0].next;
        while id != NIL {
            if !is_call(nodes, id) && ops[nodes[id].op].read().is_some() {
                return Some(nodes[id].op);
            }
            id = nodes[id].next;
        }
        None
    };

    // The memo: (Zobrist hash of the linearized set, state hash, state length).
    // 64-bit hashes make a false "already explored" astronomically unlikely.
    let mut zobrist_rng = 0x9E37_79B9_7F4A_7C15u64 ^ ops.len() as u64;
    let zobrist: Vec<u64> = (0..ops.len())
        .map(|_| {
            zobrist_rng ^= zobrist_rng << 13;
            zobrist_rng ^= zobrist_rng >> 7;
            zobrist_rng ^= zobrist_rng << 17;
            zobrist_rng
        })
        .collect();
    let mut linearized = 0u64;
    let mut seen: HashSet<(u64, u64, u64)> = HashSet::new();
    let mut stack: Vec<(usize, Undo)> = Vec::new();
    let mut state = KeyState {
        value: None,
        hash: 0,
    };
    let mut entry = nodes[0].next;
    while nodes[0].next != NIL {
        if *budget == 0 {
            return Verdict::Unknown;
        }
        *budget -= 1;
        if entry != NIL && is_call(&nodes, entry) {
            let op = nodes[entry].op;
            let stepped = state.step(ops[op]);
            let stepped = match stepped {
                Some(undo) if ops[op].read().is_none() => {
                    let readable = first_pending_read(&nodes).is_none_or(|read| {
                        ops[read].read().is_some_and(|out| state.is_prefix_of(out))
                            || puts_under[read].iter().any(|&p| p != op && !done[p])
                    });
                    if readable {
                        Some(undo)
                    } else {
                        state.undo(undo);
                        None
                    }
                }
                other => other,
            };
            if let Some(undo) = stepped {
                let (hash, len) = state.key();
                if seen.insert((linearized ^ zobrist[op], hash, len)) {
                    linearized ^= zobrist[op];
                    done[op] = true;
                    stack.push((entry, undo));
                    lift(&mut nodes, entry);
                    entry = nodes[0].next;
                    continue;
                }
                state.undo(undo);
            }
            entry = nodes[entry].next;
        } else {
            // A return whose call is not linearized yet (or nothing left to try):
            // this branch is dead; back up.
            let Some((call, undo)) = stack.pop() else {
                return Verdict::Illegal;
            };
            linearized ^= zobrist[nodes[call].op];
            done[nodes[call].op] = false;
            state.undo(undo);
            unlift(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Verdict::Linearizable
}

/// Removes a call and its return from the list (they keep their own links).
fn lift(nodes: &mut [Node], call: usize) {
    for id in [call, nodes[call].matching] {
        let (prev, next) = (nodes[id].prev, nodes[id].next);
        nodes[prev].next = next;
        if next != NIL {
            nodes[next].prev = prev;
        }
    }
}

/// Puts back what `lift` removed, in reverse order.
fn unlift(nodes: &mut [Node], call: usize) {
    for id in [nodes[call].matching, call] {
        let (prev, next) = (nodes[id].prev, nodes[id].next);
        nodes[prev].next = id;
        if next != NIL {
            nodes[next].prev = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, input: Input, output: Option<&str>, call: u64, ret: u64) -> Operation {
        Operation {
            client,
            input,
            output: output.map(Value::from),
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
    const T: u64 = 10_000_000;

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

    /// A Put, then waves of concurrent appends revealed only by a final read:
    /// without pruning, the search tries every order of every wave before it
    /// reaches the read.
    fn waves_with_one_read() -> (Vec<Operation>, String) {
        let mut h = vec![op(0, put("k", "P"), None, 0, 10)];
        let mut value = String::from("P");
        for wave in 1..30u64 {
            let (call, ret) = (wave * 100, wave * 100 + 50);
            for i in 0..6usize {
                let c = (i * 5 + wave as usize) % 6;
                let v = format!("[{c}.{wave}]");
                h.push(op(c, append("k", &v), None, call, ret));
                value.push_str(&v);
            }
        }
        (h, value)
    }

    #[test]
    fn orders_no_later_read_could_see_are_pruned() {
        let (mut h, value) = waves_with_one_read();
        h.push(op(9, get("k"), Some(&value), 5000, 5100));
        assert_eq!(check_kv(&h, 20_000), Verdict::Linearizable);
        let (mut h, mut value) = waves_with_one_read();
        value.push_str("[0.29]");
        h.push(op(9, get("k"), Some(&value), 5000, 5100));
        assert_eq!(check_kv(&h, 20_000), Verdict::Illegal);
    }

    fn cas(k: &str, expected: Option<&str>, new: &str, outcome: CasOutcome) -> Input {
        Input::Cas {
            key: k.into(),
            expected: expected.map(String::from),
            new: new.into(),
            outcome,
        }
    }

    /// Two swaps from the same value cannot both succeed (a lost update),
    /// unless something set the value back in between.
    #[test]
    fn two_swaps_from_one_value_cannot_both_succeed() {
        let lost_update = vec![
            op(0, put("x", "0"), None, 0, 10),
            op(
                1,
                cas("x", Some("0"), "1", CasOutcome::Swapped),
                None,
                20,
                50,
            ),
            op(
                2,
                cas("x", Some("0"), "2", CasOutcome::Swapped),
                None,
                20,
                50,
            ),
        ];
        assert_eq!(check_kv(&lost_update, T), Verdict::Illegal);
        let mut reset = lost_update.clone();
        reset.push(op(3, put("x", "0"), None, 20, 50));
        assert_eq!(check_kv(&reset, T), Verdict::Linearizable);
        let one_loses = vec![
            op(0, put("x", "0"), None, 0, 10),
            op(
                1,
                cas("x", Some("0"), "1", CasOutcome::Swapped),
                None,
                20,
                50,
            ),
            op(
                2,
                cas("x", Some("0"), "2", CasOutcome::Failed(Some("1".into()))),
                None,
                20,
                50,
            ),
            op(3, get("x"), Some("1"), 60, 70),
        ];
        assert_eq!(check_kv(&one_loses, T), Verdict::Linearizable);
    }

    /// A failed swap read the value it compared with: the read must be a
    /// value the key had, and one that fails the compare.
    #[test]
    fn a_failed_swap_read_the_value_it_compared() {
        let h = |read: Option<&str>| {
            vec![
                op(0, put("x", "0"), None, 0, 10),
                op(
                    1,
                    cas(
                        "x",
                        Some("9"),
                        "1",
                        CasOutcome::Failed(read.map(String::from)),
                    ),
                    None,
                    20,
                    30,
                ),
            ]
        };
        assert_eq!(check_kv(&h(Some("0")), T), Verdict::Linearizable);
        assert_eq!(
            check_kv(&h(Some("7")), T),
            Verdict::Illegal,
            "a value never set"
        );
        assert_eq!(check_kv(&h(None), T), Verdict::Illegal, "the key exists");
        let compare_held = vec![
            op(0, put("x", "0"), None, 0, 10),
            op(
                1,
                cas("x", Some("0"), "1", CasOutcome::Failed(Some("0".into()))),
                None,
                20,
                30,
            ),
        ];
        assert_eq!(
            check_kv(&compare_held, T),
            Verdict::Illegal,
            "the compare held"
        );
        let create = vec![
            op(1, cas("y", None, "1", CasOutcome::Swapped), None, 0, 10),
            op(
                1,
                cas("y", None, "2", CasOutcome::Failed(Some("1".into()))),
                None,
                20,
                30,
            ),
        ];
        assert_eq!(check_kv(&create, T), Verdict::Linearizable);
    }

    /// A swap with no reply may take effect later, or never; a read decides.
    #[test]
    fn a_swap_without_a_reply_does_what_its_compare_says_when_it_takes_effect() {
        let pending = Operation {
            client: 0,
            input: cas("x", Some("0"), "1", CasOutcome::Unknown),
            output: None,
            call: 20,
            ret: None,
        };
        let set = op(0, put("x", "0"), None, 0, 10);
        for seen in ["0", "1"] {
            let h = vec![
                set.clone(),
                pending.clone(),
                op(1, get("x"), Some(seen), 40, 50),
            ];
            assert_eq!(check_kv(&h, T), Verdict::Linearizable, "saw {seen}");
        }
        let moved_on = vec![
            set,
            op(2, put("x", "5"), None, 12, 15),
            pending,
            op(1, get("x"), Some("1"), 40, 50),
        ];
        assert_eq!(
            check_kv(&moved_on, T),
            Verdict::Illegal,
            "its compare fails after 5"
        );
    }

    #[test]
    fn running_out_of_steps_is_unknown_not_linearizable() {
        let h = vec![
            op(0, put("x", "1"), None, 0, 10),
            op(1, get("x"), Some("1"), 20, 30),
        ];
        assert_eq!(check_kv(&h, 1), Verdict::Unknown);
        assert_eq!(check_kv(&h, 100), Verdict::Linearizable);
    }
}
