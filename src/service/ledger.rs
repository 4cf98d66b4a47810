//! The money ledger: accounts with balances in cents, and exactly-once transfers.
//!
//! Every transfer carries a caller-chosen txid. The ledger remembers the txids
//! of the last [`TXID_RETENTION`] transfers with their fields and outcome, so a
//! retried transfer returns the first outcome and moves no money twice, and a
//! txid reused with other fields is refused. That is the exactly-once window
//! for txids: once [`TXID_RETENTION`] newer transfers have been applied, a txid
//! is forgotten, and the same transfer sent again would run again. (A client
//! library retry within its session is deduplicated by the session table
//! instead, whatever the txid.) The window counts transfers, not time, so it is
//! the same on every replica.
//!
//! Names and transfer records are shared (`Arc`), so cloning the ledger for a
//! snapshot copies the maps' structure and pointers, not the strings in them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::command::{format_cents, Transfer, MAX_CENTS};
use super::quota::account_cost;
use super::reply::{get_kept, put_kept, Code, Reply};
use super::snapshot_stream::{corrupt, SnapshotReader, SnapshotWriter};

/// How many of the most recent transfers' txids are remembered.
pub const TXID_RETENTION: usize = 100_000;

/// Accounts and the transfers applied to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Invariant: every balance is in `0..=MAX_CENTS * accounts`.
    accounts: BTreeMap<Arc<str>, i64>,
    /// The last `TXID_RETENTION` transfers, with the reply each got.
    /// Invariant: exactly the txids in `order`.
    transfers: HashMap<Arc<str>, Arc<(Transfer, Reply)>>,
    /// Their txids, oldest first.
    order: VecDeque<Arc<str>>,
}

impl Ledger {
    /// Opens `account` with `cents`.
    pub fn open(&mut self, account: &str, cents: i64) -> Reply {
        if self.accounts.contains_key(account) {
            return Reply::error(Code::Exists, format!("account {account} already exists"));
        }
        self.accounts.insert(Arc::from(account), cents);
        Reply::Ok
    }

    /// Applies a transfer once per txid; retries get the first outcome.
    pub fn transfer(&mut self, t: &Transfer) -> Reply {
        if let Some((first, outcome)) = self.transfers.get(t.txid.as_str()).map(|r| &**r) {
            if first == t {
                return outcome.clone();
            }
            return Reply::error(
                Code::TxidReused,
                format!("txid {} was used for a different transfer", t.txid),
            );
        }
        let outcome = self.try_transfer(t);
        self.remember(t.clone(), outcome.clone());
        outcome
    }

    /// Records a transfer's outcome, forgetting the oldest beyond the window.
    fn remember(&mut self, t: Transfer, outcome: Reply) {
        if self.order.len() >= TXID_RETENTION {
            if let Some(oldest) = self.order.pop_front() {
                self.transfers.remove(&oldest);
            }
        }
        let txid: Arc<str> = Arc::from(t.txid.as_str());
        self.order.push_back(Arc::clone(&txid));
        self.transfers.insert(txid, Arc::new((t, outcome)));
        debug_assert_eq!(self.order.len(), self.transfers.len());
    }

    /// Whether `account` exists.
    pub fn has_account(&self, account: &str) -> bool {
        self.accounts.contains_key(account)
    }

    /// The accounts' size as the quota counts it.
    pub fn account_bytes(&self) -> u64 {
        self.accounts.keys().map(|a| account_cost(a)).sum()
    }

    /// How many txids are remembered.
    pub fn remembered_txids(&self) -> usize {
        self.order.len()
    }

    fn try_transfer(&mut self, t: &Transfer) -> Reply {
        let (Some(&from), Some(&to)) = (
            self.accounts.get(t.from.as_str()),
            self.accounts.get(t.to.as_str()),
        ) else {
            let missing = if self.accounts.contains_key(t.from.as_str()) {
                &t.to
            } else {
                &t.from
            };
            return Reply::error(Code::NoAccount, format!("no such account: {missing}"));
        };
        if from < t.cents {
            return Reply::error(
                Code::InsufficientFunds,
                format!(
                    "{} has {}, needs {}",
                    t.from,
                    format_cents(from),
                    format_cents(t.cents)
                ),
            );
        }
        let Some(new_to) = to.checked_add(t.cents).filter(|&v| v <= MAX_CENTS) else {
            return Reply::error(
                Code::BadRequest,
                format!("{} would exceed the largest balance", t.to),
            );
        };
        for (account, cents) in [(&t.from, from - t.cents), (&t.to, new_to)] {
            if let Some(balance) = self.accounts.get_mut(account.as_str()) {
                *balance = cents;
            }
        }
        Reply::Ok
    }

    /// The balance of `account` in cents, if it exists.
    pub fn balance_cents(&self, account: &str) -> Option<i64> {
        self.accounts.get(account).copied()
    }

    /// The sum of every balance, in cents.
    pub fn total_cents(&self) -> i128 {
        self.accounts.values().map(|&c| i128::from(c)).sum()
    }

    /// `BALANCE x.yy` or `NOT_FOUND`.
    pub fn balance(&self, account: &str) -> Reply {
        match self.accounts.get(account) {
            Some(&c) => Reply::Balance(c),
            None => Reply::NotFound,
        }
    }

    /// `AUDIT accounts=N total=X`.
    pub fn audit(&self) -> Reply {
        Reply::Audit {
            accounts: self.accounts.len() as u64,
            total_cents: self.total_cents(),
        }
    }

    /// Number of accounts, the money in them (cents), and transfers remembered.
    pub fn size(&self) -> (usize, i128, usize) {
        (
            self.accounts.len(),
            self.total_cents(),
            self.transfers.len(),
        )
    }

    /// Writes the ledger's encoding: count, then accounts (name, cents) in
    /// name order; count, then remembered transfers (txid, from, to, cents,
    /// outcome), oldest first.
    pub fn write_to<W: Write>(&self, w: &mut SnapshotWriter<W>) -> io::Result<()> {
        w.put_uvarint(self.accounts.len() as u64)?;
        for (a, &c) in &self.accounts {
            w.put_bytes(a.as_bytes())?;
            w.put_uvarint(c as u64)?;
        }
        w.put_uvarint(self.order.len() as u64)?;
        for (t, outcome) in self
            .order
            .iter()
            .filter_map(|txid| self.transfers.get(txid).map(|r| &**r))
        {
            w.put_bytes(t.txid.as_bytes())?;
            w.put_bytes(t.from.as_bytes())?;
            w.put_bytes(t.to.as_bytes())?;
            w.put_uvarint(t.cents as u64)?;
            put_kept(w, outcome)?;
        }
        Ok(())
    }

    /// Reads a ledger written by [`Ledger::write_to`] (with `outcomes_as_lines`,
    /// one from before outcomes were kept in their binary encoding).
    pub fn read_from<R: Read>(
        r: &mut SnapshotReader<R>,
        outcomes_as_lines: bool,
    ) -> io::Result<Self> {
        let cents = |r: &mut SnapshotReader<R>| {
            i64::try_from(r.get_uvarint()?).map_err(|_| corrupt("balance out of range"))
        };
        let mut ledger = Ledger::default();
        for _ in 0..r.get_uvarint()? {
            let account = r.get_string()?;
            let balance = cents(r)?;
            if ledger
                .accounts
                .insert(Arc::from(account.as_str()), balance)
                .is_some()
            {
                return Err(corrupt(format!("account {account} twice")));
            }
        }
        for _ in 0..r.get_uvarint()? {
            let t = Transfer {
                txid: r.get_string()?,
                from: r.get_string()?,
                to: r.get_string()?,
                cents: cents(r)?,
            };
            let outcome = get_kept(r, outcomes_as_lines)?;
            if ledger.transfers.contains_key(t.txid.as_str()) {
                return Err(corrupt(format!("txid {} twice", t.txid)));
            }
            ledger.remember(t, outcome);
        }
        Ok(ledger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(txid: &str, from: &str, to: &str, cents: i64) -> Transfer {
        Transfer {
            txid: txid.into(),
            from: from.into(),
            to: to.into(),
            cents,
        }
    }

    #[test]
    fn transfers_apply_once_per_txid_and_conserve_money() {
        let mut l = Ledger::default();
        assert_eq!(l.open("a", 1000), Reply::Ok);
        assert_eq!(l.open("a", 5).code(), Some(Code::Exists));
        l.open("b", 0);
        assert_eq!(l.transfer(&t("t1", "a", "b", 250)), Reply::Ok);
        assert_eq!(
            l.transfer(&t("t1", "a", "b", 250)),
            Reply::Ok,
            "retry: same outcome"
        );
        assert_eq!(l.balance("a").to_string(), "BALANCE 7.50");
        assert_eq!(
            l.transfer(&t("t1", "a", "b", 1)).code(),
            Some(Code::TxidReused)
        );
        let short = l.transfer(&t("t2", "b", "a", 9999)).to_string();
        assert_eq!(short, "ERR INSUFFICIENT_FUNDS b has 2.50, needs 99.99");
        assert_eq!(
            l.transfer(&t("t3", "a", "zed", 1)).code(),
            Some(Code::NoAccount)
        );
        assert_eq!(l.audit().to_string(), "AUDIT accounts=2 total=10.00");
    }

    #[test]
    fn txids_are_remembered_for_the_last_retention_window_of_transfers() {
        let mut l = Ledger::default();
        l.open("a", 10 * TXID_RETENTION as i64);
        l.open("b", 0);
        assert_eq!(l.transfer(&t("first", "a", "b", 1)), Reply::Ok);
        for i in 1..TXID_RETENTION {
            l.transfer(&t(&format!("t{i}"), "a", "b", 1));
        }
        assert_eq!(l.remembered_txids(), TXID_RETENTION);
        // Still inside the window: a retry moves nothing.
        assert_eq!(l.transfer(&t("first", "a", "b", 1)), Reply::Ok);
        assert_eq!(l.balance("b"), Reply::Balance(TXID_RETENTION as i64));
        // One more transfer pushes "first" out of the window: it would run again.
        l.transfer(&t("one-more", "a", "b", 1));
        assert_eq!(l.remembered_txids(), TXID_RETENTION);
        assert!(!l.transfers.contains_key("first"));
        assert!(l.transfers.contains_key("t1"));
    }

    /// A snapshot's clone shares the accounts' names and the transfer
    /// records, and neither side sees the other's later transfers.
    #[test]
    fn a_clone_shares_records_and_is_unaffected_by_later_transfers_and_vice_versa() {
        let mut original = Ledger::default();
        original.open("a", 100);
        original.open("b", 0);
        original.transfer(&t("t1", "a", "b", 10));
        let mut copy = original.clone();
        assert!(Arc::ptr_eq(
            &original.transfers["t1"],
            &copy.transfers["t1"]
        ));
        let (name, _) = original.accounts.first_key_value().unwrap();
        assert!(Arc::ptr_eq(
            name,
            copy.accounts.first_key_value().unwrap().0
        ));
        original.transfer(&t("t2", "a", "b", 1));
        copy.transfer(&t("t3", "b", "a", 5));
        copy.open("c", 7);
        assert_eq!(
            (original.balance("a"), copy.balance("a")),
            (Reply::Balance(89), Reply::Balance(95))
        );
        assert_eq!(original.remembered_txids(), 2);
        assert!(original.transfers.contains_key("t2") && !copy.transfers.contains_key("t2"));
        assert!(copy.transfers.contains_key("t3") && !original.transfers.contains_key("t3"));
        assert_eq!(
            (original.has_account("c"), copy.has_account("c")),
            (false, true)
        );
    }
}
