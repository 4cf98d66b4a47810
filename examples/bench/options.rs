//! The benchmark's flags, Go style like the server's: `-flag value`,
//! `--flag value` or `-flag=value`.

use std::path::PathBuf;

/// Printed on `-h` and after a bad flag.
pub const USAGE: &str = "\
usage: bench [flags]

  -clients 1,16,64,256   client counts, one row each (default 1,16,64,256)
  -ops N                 commands per row, shared among the clients (default 20000)
  -mode M[,M...]         put | get | mixed | transfer | cas | range, one row per client count
                         each (default put)
  -read-pct P            mixed mode: percentage of GETs, the rest PUTs (default 90)
  -keys N                get/mixed: keys preloaded before the row (default 1000)
  -reads session|plain|serializable
                         send GETs inside the client's session (CLIENT id seq GET k, as the
                         client library does; default), as plain GET k lines, or as
                         serializable reads (GET k serializable, in the session) that any
                         server answers from its own state: client i then talks to server
                         i mod 3, not to the leader
  -a PATH                the raftkv server binary to start (default: target/release/raftkv
                         next to this example)
  -b PATH                a second binary: every row runs on a fresh cluster of A, then of B
  -repeat N              run each row N times per binary, interleaved A,B,A,B (default 1)
  -dir PATH              where the clusters keep their data and fdatasync is measured
                         (default: the system temp directory; use the disk you care about)
  -catchup MB            instead of rows: load MB megabytes of state, wipe a follower's disk,
                         restart it, and time its catch-up while the first -clients count of
                         writers PUT through the leader; reports the leader's memory (first
                         binary only)
  -value-kb N            -catchup: size of each loaded value (default 900)
  -target A,B,C          benchmark a running cluster instead (\":PORT\" means 127.0.0.1:PORT);
                         no server CPU column. A client token comes from RAFTKV_TOKEN.
  -h                     print this help";

/// What each client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `PUT` of a 16-byte key (a new one each time) and a 64-byte value.
    Put,
    /// `GET` of a random preloaded key.
    Get,
    /// `GET`s of random preloaded keys, `-read-pct` of the time; the rest `PUT`s to them.
    Mixed,
    /// `TRANSFER` of 0.01 between two of 64 accounts.
    Transfer,
    /// A compare-and-swap increment of the client's own counter: a `TXN`
    /// that sets it one higher if its mod revision is the one the client
    /// last saw.
    Cas,
    /// `RANGE` of a 100-key prefix (64-byte values), chosen at random.
    Range,
}

/// How reads are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// In the session: `CLIENT id seq GET k` (linearizable, by ReadIndex).
    Session,
    /// As plain lines: `GET k` (linearizable, by ReadIndex).
    Plain,
    /// `GET k serializable`, answered by any server from its own state.
    Serializable,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "put" => Some(Mode::Put),
            "get" => Some(Mode::Get),
            "mixed" => Some(Mode::Mixed),
            "transfer" => Some(Mode::Transfer),
            "cas" => Some(Mode::Cas),
            "range" => Some(Mode::Range),
            _ => None,
        }
    }

    /// The mode's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Put => "put",
            Mode::Get => "get",
            Mode::Mixed => "mixed",
            Mode::Transfer => "transfer",
            Mode::Cas => "cas",
            Mode::Range => "range",
        }
    }
}

/// Parsed command line.
#[derive(Debug)]
pub struct Options {
    /// Client counts, one row each.
    pub clients: Vec<usize>,
    /// Commands per row.
    pub ops: usize,
    /// Modes, one row per client count each.
    pub modes: Vec<Mode>,
    /// Mixed mode: percentage of reads.
    pub read_pct: u32,
    /// Keys preloaded for `get` and `mixed`.
    pub keys: usize,
    /// How GETs are sent.
    pub reads: Reads,
    /// The server binaries to compare: A, then B if given. Empty: the default.
    pub binaries: Vec<PathBuf>,
    /// Runs per row and binary.
    pub repeat: usize,
    /// Parent directory of the run's data.
    pub dir: PathBuf,
    /// A running cluster to benchmark instead of starting one.
    pub target: Option<Vec<String>>,
    /// `-catchup MB`: the catch-up experiment instead of rows.
    pub catchup_mb: Option<usize>,
    /// `-catchup`: size of each loaded value, in KiB.
    pub value_kb: usize,
    /// `-h`: print the usage and exit.
    pub help: bool,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        clients: vec![1, 16, 64, 256],
        ops: 20_000,
        modes: vec![Mode::Put],
        read_pct: 90,
        keys: 1000,
        reads: Reads::Session,
        binaries: Vec::new(),
        repeat: 1,
        dir: std::env::temp_dir(),
        target: None,
        catchup_mb: None,
        value_kb: 900,
        help: false,
    };
    let (mut a, mut b) = (None, None);
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument '{arg}'"));
        };
        if matches!(flag, "h" | "help") {
            o.help = true;
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None => {
                let v = args.get(i).ok_or(format!("-{flag} needs a value"))?;
                i += 1;
                (flag, v.clone())
            }
        };
        let number = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("-{name}: '{v}' is not a positive integer"))
        };
        match name {
            "clients" => o.clients = value.split(',').map(number).collect::<Result<_, _>>()?,
            "ops" => o.ops = number(&value)?,
            "mode" => {
                o.modes = value
                    .split(',')
                    .map(|m| Mode::parse(m).ok_or(format!("-mode: unknown mode '{m}'")))
                    .collect::<Result<_, _>>()?
            }
            "read-pct" => {
                o.read_pct = value
                    .parse()
                    .ok()
                    .filter(|&p| p <= 100)
                    .ok_or(format!("-read-pct: '{value}' is not 0..=100"))?
            }
            "keys" => o.keys = number(&value)?,
            "reads" => {
                o.reads = match value.as_str() {
                    "session" => Reads::Session,
                    "plain" => Reads::Plain,
                    "serializable" => Reads::Serializable,
                    _ => {
                        return Err(format!(
                            "-reads is session, plain or serializable, got '{value}'"
                        ))
                    }
                }
            }
            "a" => a = Some(PathBuf::from(value)),
            "b" => b = Some(PathBuf::from(value)),
            "repeat" => o.repeat = number(&value)?,
            "dir" => o.dir = PathBuf::from(value),
            "target" => o.target = Some(value.split(',').map(expand).collect()),
            "catchup" => o.catchup_mb = Some(number(&value)?),
            "value-kb" => o.value_kb = number(&value)?,
            _ => return Err(format!("unknown flag -{name}")),
        }
    }
    match (a, b) {
        (None, Some(_)) => return Err("-b needs -a (the baseline)".into()),
        (a, b) => o.binaries = a.into_iter().chain(b).collect(),
    }
    if o.target.is_some() && o.catchup_mb.is_some() {
        return Err("-catchup starts its own cluster: it takes no -target".into());
    }
    if o.target.is_some() && !o.binaries.is_empty() {
        return Err("-target benchmarks a running cluster: it takes no -a or -b".into());
    }
    Ok(o)
}

/// Expands `:8001` to `127.0.0.1:8001`.
fn expand(addr: &str) -> String {
    if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    }
}
