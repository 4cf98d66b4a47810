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

use std::collections::{HashMap, HashSet};

use std::time::{Duration, Instant};

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Read a key.
    Get(String),
    /// Set a key.
    Put(String, String),
    /// Append to a key.
    Append(String, String),
}

impl Input {
    fn key(&self) -> &str {
        match self {
            Input::Get(k) | Input::Put(k, _) | Input::Append(k, _) => k,
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
    /// What a Get returned (`None`: key absent); ignored for writes.
    pub output: Option<String>,
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
    /// The search ran out of time.
    Unknown,
}

/// Checks a whole history, key by key, within `timeout` overall.
pub fn check_kv(history: &[Operation], timeout: Duration) -> Verdict {
    let deadline = Instant::now() + timeout;
    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in history {
        let unknown_read = matches!(op.input, Input::Get(_)) && op.ret.is_none();
        if !unknown_read {
            by_key.entry(op.input.key()).or_default().push(op);
        }
    }
    let mut verdict = Verdict::Linearizable;
    for ops in by_key.values() {
        match check_one_key(ops, deadline) {
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
            Input::Get(_) => (op.output == self.value).then_some(Undo::Nothing),
            Input::Put(_, v) => {
                let undo = Undo::Restore(self.value.replace(v.clone()), self.hash);
                // Absent and empty differ: the hash of a present value starts at 1.
                self.hash = extend_hash(1, v.as_bytes());
                Some(undo)
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

fn check_one_key(ops: &[&Operation], deadline: Instant) -> Verdict {
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
    let mut steps = 0u64;
    while nodes[0].next != NIL {
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return Verdict::Unknown;
        }
        if entry != NIL && is_call(&nodes, entry) {
            let op = nodes[entry].op;
            if let Some(undo) = state.step(ops[op]) {
                let (hash, len) = state.key();
                if seen.insert((linearized ^ zobrist[op], hash, len)) {
                    linearized ^= zobrist[op];
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
