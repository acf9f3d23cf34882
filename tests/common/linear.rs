//! A linearizability checker for histories of KV operations.
//!
//! Wing & Gong's search with Lowe's memoisation, split per key
//! (P-compositionality), as Porcupine does: a history is linearizable iff
//! every key's sub-history is, so each key is searched on its own. The
//! model is a register per key holding `Option<Value>`; every write in a
//! history writes a value no other write writes, so a value names a version.
//!
//! An operation whose outcome is unknown (a timeout, a connection error, a
//! 5xx on a write) is [`Outcome::Indeterminate`]: it may take effect at any
//! time after its invocation, or never, so its completion is `u64::MAX`.
//!
//! When a key's history is not linearizable, the [`Violation`] holds the
//! smallest window of that key's operations, around the return the search
//! could not get past, that is not linearizable from any state the key
//! could have had when the window opened. The window holds every operation
//! that overlaps it, the writes of the values it observes and, of the
//! indeterminate operations begun earlier (which may still take effect),
//! those writing an observed value and one of each kind of the others. The
//! verdict is always the whole history's; the window only explains it.
//!
//! Reads that promise less are checked with what they promise:
//! [`check_bounded_staleness`] for reads that may be served by a leader
//! that has just lost its leadership, [`check_stale_reads`] for `?stale`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A written value; unique per write within one history.
pub type Value = u64;

/// One verb of a single-key transaction (`/v1/txn`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxnStep {
    Set(Value),
    /// `cas` with the ModifyIndex of the version holding `expected`
    /// (`None`: index 0, the key must be absent).
    Cas {
        expected: Option<Value>,
        new: Value,
    },
    Get,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Write(Value),
    Delete,
    Read,
    /// `?cas=<ModifyIndex>`: `expected` is the value read with that index,
    /// `None` for `cas=0` (the key must be absent).
    Cas {
        expected: Option<Value>,
        new: Value,
    },
    /// An atomic transaction on one key: all steps or, when a `Cas` step
    /// fails, none.
    Txn(Vec<TxnStep>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A write or delete acknowledged.
    Done,
    Read(Option<Value>),
    /// A CAS's answer; `false` changed nothing and is read-like.
    Cas(bool),
    /// A transaction's `Get` results in order, or `None` when it was rolled
    /// back.
    Txn(Option<Vec<Option<Value>>>),
    /// May have taken effect at any time after invocation, or never.
    Indeterminate,
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    /// Nanoseconds since the history's epoch.
    pub invoked: u64,
    /// Nanoseconds since the epoch; `u64::MAX` when indeterminate.
    pub completed: u64,
    /// Free text for the report: the agent and read mode used.
    pub via: String,
}

impl Operation {
    pub fn is_indeterminate(&self) -> bool {
        self.outcome == Outcome::Indeterminate
    }

    /// The value this operation writes if it takes effect, for the set of
    /// states a key may hold.
    fn written(&self) -> Vec<Option<Value>> {
        let mut out = Vec::new();
        match &self.call {
            Call::Write(v) | Call::Cas { new: v, .. } => out.push(Some(*v)),
            Call::Delete => out.push(None),
            Call::Read => {}
            Call::Txn(steps) => {
                for s in steps {
                    match s {
                        TxnStep::Set(v) | TxnStep::Cas { new: v, .. } => out.push(Some(*v)),
                        TxnStep::Delete => out.push(None),
                        TxnStep::Get => {}
                    }
                }
            }
        }
        out
    }
}

/// The register's transition: the state after `op` from `state`, or `None`
/// when `op`'s outcome cannot happen from `state`.
fn apply(state: Option<Value>, op: &Operation) -> Option<Option<Value>> {
    let any = op.outcome == Outcome::Indeterminate;
    match (&op.call, &op.outcome) {
        (Call::Write(v), Outcome::Done | Outcome::Indeterminate) => Some(Some(*v)),
        (Call::Delete, Outcome::Done | Outcome::Indeterminate) => Some(None),
        (Call::Read, Outcome::Read(r)) => (*r == state).then_some(state),
        (Call::Read, Outcome::Indeterminate) => Some(state),
        (Call::Cas { expected, new }, outcome) => {
            let swaps = state == *expected;
            match outcome {
                Outcome::Indeterminate => Some(if swaps { Some(*new) } else { state }),
                Outcome::Cas(true) => swaps.then_some(Some(*new)),
                Outcome::Cas(false) => (!swaps).then_some(state),
                _ => None,
            }
        }
        (Call::Txn(steps), outcome) => {
            let (result, after) = run_txn(state, steps);
            if any || *outcome == Outcome::Txn(result) {
                Some(after)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A transaction's result and the state after it.
fn run_txn(state: Option<Value>, steps: &[TxnStep]) -> (Option<Vec<Option<Value>>>, Option<Value>) {
    let mut s = state;
    let mut gets = Vec::new();
    for step in steps {
        match step {
            TxnStep::Set(v) => s = Some(*v),
            TxnStep::Delete => s = None,
            TxnStep::Get => gets.push(s),
            TxnStep::Cas { expected, new } => {
                if s != *expected {
                    return (None, state);
                }
                s = Some(*new);
            }
        }
    }
    (Some(gets), s)
}

/// A key whose history is not linearizable.
#[derive(Debug)]
pub struct Violation {
    pub key: String,
    /// The operation whose return the search could not get past.
    pub stuck: Operation,
    /// The smallest window around it that is not linearizable on its own,
    /// in invocation order.
    pub window: Vec<Operation>,
    /// Whether `window` was proved not linearizable by itself (false when
    /// the search for a small window gave up and `window` is the tail of
    /// the history before the stuck return).
    pub minimal: bool,
    pub epoch_note: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?} is not linearizable: nothing can be linearized before the return of {} {}",
            self.key,
            describe_call(&self.stuck.call),
            describe_outcome(&self.stuck.outcome)
        )?;
        writeln!(
            f,
            "{} ({} ops; times in ms since the history's epoch{}):",
            if self.minimal {
                "smallest window not linearizable from any state the key could hold when it opens"
            } else {
                "history before the stuck return (no smaller window found)"
            },
            self.window.len(),
            self.epoch_note
        )?;
        write_table(f, &self.window, Some(&self.stuck))
    }
}

pub fn write_table(
    f: &mut impl fmt::Write,
    ops: &[Operation],
    mark: Option<&Operation>,
) -> fmt::Result {
    writeln!(
        f,
        "  {:>1} {:>6} {:>12} {:>12}  {:<28} {:<24} via",
        "", "client", "invoked", "completed", "call", "outcome"
    )?;
    for op in ops {
        let marked = mark
            .is_some_and(|m| m.client == op.client && m.invoked == op.invoked && m.call == op.call);
        let done = if op.completed == u64::MAX {
            "never".to_string()
        } else {
            ms(op.completed)
        };
        writeln!(
            f,
            "  {:>1} {:>6} {:>12} {:>12}  {:<28} {:<24} {}",
            if marked { ">" } else { "" },
            op.client,
            ms(op.invoked),
            done,
            describe_call(&op.call),
            describe_outcome(&op.outcome),
            op.via
        )?;
    }
    Ok(())
}

fn ms(nanos: u64) -> String {
    format!("{:.3}", nanos as f64 / 1e6)
}

fn value(v: &Option<Value>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "absent".into(),
    }
}

pub fn describe_call(c: &Call) -> String {
    match c {
        Call::Write(v) => format!("write {v}"),
        Call::Delete => "delete".into(),
        Call::Read => "read".into(),
        Call::Cas { expected, new } => format!("cas {} -> {new}", value(expected)),
        Call::Txn(steps) => {
            let s: Vec<String> = steps
                .iter()
                .map(|s| match s {
                    TxnStep::Set(v) => format!("set {v}"),
                    TxnStep::Cas { expected, new } => format!("cas {}->{new}", value(expected)),
                    TxnStep::Get => "get".into(),
                    TxnStep::Delete => "delete".into(),
                })
                .collect();
            format!("txn[{}]", s.join(", "))
        }
    }
}

pub fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Done => "ok".into(),
        Outcome::Read(v) => value(v),
        Outcome::Cas(b) => b.to_string(),
        Outcome::Txn(None) => "rolled back".into(),
        Outcome::Txn(Some(gets)) => {
            let g: Vec<String> = gets.iter().map(value).collect();
            format!("ok [{}]", g.join(", "))
        }
        Outcome::Indeterminate => "indeterminate".into(),
    }
}

/// Checks a whole history, key by key.
pub fn check(history: &[Operation]) -> Result<(), Box<Violation>> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, ops) in by_key {
        if let Err(stuck) = search(&ops, &[None]) {
            return Err(Box::new(explain(key, &ops, stuck)));
        }
    }
    Ok(())
}

/// Checks reads that may be as stale as `bound` nanoseconds (a read served
/// by a leader that has not yet learnt it was deposed): each such read may
/// be linearized at any point from `bound` before its invocation to its
/// completion. Reads in `history` for which `relaxed` is false keep their
/// intervals.
pub fn check_bounded_staleness(
    history: &[Operation],
    relaxed: impl Fn(&Operation) -> bool,
    bound: u64,
) -> Result<(), Box<Violation>> {
    let widened: Vec<Operation> = history
        .iter()
        .map(|op| {
            let mut op = op.clone();
            if op.call == Call::Read && relaxed(&op) {
                op.invoked = op.invoked.saturating_sub(bound);
            }
            op
        })
        .collect();
    check(&widened).map_err(|mut v| {
        v.epoch_note = format!(
            "; relaxed reads shown with their invocation moved {} ms earlier",
            bound / 1_000_000
        );
        v
    })
}

/// One `?stale` read, with what the agent said about its position.
#[derive(Clone, Debug)]
pub struct StaleRead {
    pub client: usize,
    pub agent: String,
    pub key: String,
    pub invoked: u64,
    pub completed: u64,
    pub value: Option<Value>,
    /// The entry's ModifyIndex (0 when absent).
    pub modify_index: u64,
    /// The response's `X-Consul-Index`.
    pub index: u64,
}

/// `?stale` reads promise, per client session and agent: never a value
/// that no write wrote (or wrote only after the read completed), and never
/// an older version of a key than one already seen (ModifyIndex and the
/// agent's index never go backwards). Reads must be in each client's
/// issue order (clients are sequential).
pub fn check_stale_reads(reads: &[StaleRead], writes: &[Operation]) -> Result<(), String> {
    // The first invocation of each written value.
    let mut written: BTreeMap<(&str, Value), u64> = BTreeMap::new();
    for w in writes {
        for v in w.written().into_iter().flatten() {
            let e = written.entry((&w.key, v)).or_insert(u64::MAX);
            *e = (*e).min(w.invoked);
        }
    }
    let mut seen: BTreeMap<(usize, &str, &str), &StaleRead> = BTreeMap::new();
    let mut index_of: BTreeMap<(&str, Value), u64> = BTreeMap::new();
    for r in reads {
        if let Some(v) = r.value {
            match written.get(&(r.key.as_str(), v)) {
                None => {
                    return Err(format!(
                        "stale read of {:?} by client {} on {} returned {v}, which no write wrote",
                        r.key, r.client, r.agent
                    ))
                }
                Some(&t) if t > r.completed => {
                    return Err(format!(
                        "stale read of {:?} by client {} on {} returned {v} before it was written",
                        r.key, r.client, r.agent
                    ))
                }
                _ => {}
            }
            if let Some(&i) = index_of.get(&(r.key.as_str(), v)) {
                if i != r.modify_index {
                    return Err(format!(
                        "value {v} of {:?} seen with ModifyIndex {i} and {} (client {} on {})",
                        r.key, r.modify_index, r.client, r.agent
                    ));
                }
            }
            index_of.insert((&r.key, v), r.modify_index);
        }
        let slot = (r.client, r.agent.as_str(), r.key.as_str());
        if let Some(prev) = seen.get(&slot) {
            let older = r.modify_index < prev.modify_index && r.value.is_some()
                || r.index < prev.index
                || r.value.is_none() && r.index < prev.modify_index;
            if older {
                return Err(format!(
                    "client {} went back in time on {} for {:?}: read {} (ModifyIndex {}, index {}) \
                     at {} ms after {} (ModifyIndex {}, index {}) at {} ms",
                    r.client,
                    r.agent,
                    r.key,
                    value(&r.value),
                    r.modify_index,
                    r.index,
                    ms(r.invoked),
                    value(&prev.value),
                    prev.modify_index,
                    prev.index,
                    ms(prev.invoked)
                ));
            }
        }
        seen.insert(slot, r);
    }
    Ok(())
}

const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// Call and return events of one key's history in time order, as a
/// doubly-linked list that operations are lifted out of and put back into.
struct Events {
    /// Per event (index 0 is the head): the operation and whether it is
    /// the call.
    op: Vec<usize>,
    is_call: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per operation: its call and return events (`NIL`: never returns).
    call_ev: Vec<usize>,
    ret_ev: Vec<usize>,
}

impl Events {
    fn new(ops: &[Operation]) -> Events {
        // (time, returns sort after calls at the same instant, op)
        let mut evs: Vec<(u64, bool, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            evs.push((op.invoked, false, i));
            if op.completed != u64::MAX {
                evs.push((op.completed.max(op.invoked), true, i));
            }
        }
        evs.sort();
        let n = evs.len() + 1;
        let mut e = Events {
            op: vec![NIL; n],
            is_call: vec![false; n],
            next: vec![NIL; n],
            prev: vec![NIL; n],
            call_ev: vec![NIL; ops.len()],
            ret_ev: vec![NIL; ops.len()],
        };
        for (k, (_, ret, i)) in evs.into_iter().enumerate() {
            let idx = k + 1;
            e.op[idx] = i;
            e.is_call[idx] = !ret;
            if ret {
                e.ret_ev[i] = idx;
            } else {
                e.call_ev[i] = idx;
            }
            e.prev[idx] = idx - 1;
            e.next[idx - 1] = idx;
        }
        e
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != NIL {
            self.prev[n] = i;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_ev[op]);
        if self.ret_ev[op] != NIL {
            self.unlink(self.ret_ev[op]);
        }
    }

    fn unlift(&mut self, op: usize) {
        if self.ret_ev[op] != NIL {
            self.relink(self.ret_ev[op]);
        }
        self.relink(self.call_ev[op]);
    }
}

/// Wing–Gong–Lowe search over one key's operations from any of `inits`.
/// On failure, the operation whose return event was the furthest the
/// search reached.
fn search(ops: &[Operation], inits: &[Option<Value>]) -> Result<(), usize> {
    let mut furthest = (0usize, 0usize);
    for init in inits {
        match search_from(ops, *init) {
            Ok(()) => return Ok(()),
            Err(at) => furthest = furthest.max(at),
        }
    }
    Err(furthest.1)
}

/// Interchangeable indeterminate operations: the ones that write a value
/// nobody ever observed. Such a write can only leave the key holding
/// something no read returns, so every write of one class has the same
/// effect, and once invoked each stays available for ever: the search only
/// ever fires the earliest-invoked unfired one of a class. Without this,
/// every subset of the pending indeterminate writes is a state of its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum JunkClass {
    Write,
    Delete,
    Cas(Option<Value>),
}

/// What an unobserved write leaves behind; no read returns it.
const JUNK: Value = u64::MAX - 1;

/// Rewrites indeterminate writes of unobserved values to [`JUNK`] and
/// returns their classes.
fn junk_classes(ops: &[Operation]) -> (Vec<Operation>, Vec<Option<JunkClass>>) {
    let mut observed: HashSet<Value> = HashSet::new();
    for op in ops {
        match &op.outcome {
            Outcome::Read(Some(v)) => {
                observed.insert(*v);
            }
            Outcome::Txn(Some(gets)) => observed.extend(gets.iter().flatten()),
            _ => {}
        }
        match &op.call {
            Call::Cas {
                expected: Some(e), ..
            } => {
                observed.insert(*e);
            }
            Call::Txn(steps) => {
                for s in steps {
                    if let TxnStep::Cas {
                        expected: Some(e), ..
                    } = s
                    {
                        observed.insert(*e);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = ops.to_vec();
    let mut classes = vec![None; ops.len()];
    for (i, op) in out.iter_mut().enumerate() {
        if !op.is_indeterminate() {
            continue;
        }
        let unseen = |v: &Value| !observed.contains(v);
        let class = match &op.call {
            Call::Write(v) if unseen(v) => Some(JunkClass::Write),
            Call::Delete => Some(JunkClass::Delete),
            Call::Cas { expected, new } if unseen(new) => Some(JunkClass::Cas(*expected)),
            Call::Txn(steps) => match steps.as_slice() {
                [TxnStep::Set(v), TxnStep::Get] if unseen(v) => Some(JunkClass::Write),
                [TxnStep::Cas { expected, new }, TxnStep::Get] if unseen(new) => {
                    Some(JunkClass::Cas(*expected))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(c) = class {
            op.call = match c {
                JunkClass::Write => Call::Write(JUNK),
                JunkClass::Delete => Call::Delete,
                JunkClass::Cas(expected) => Call::Cas {
                    expected,
                    new: JUNK,
                },
            };
            classes[i] = Some(c);
        }
    }
    (out, classes)
}

/// Err: (event position, operation) of the furthest return reached.
fn search_from(ops: &[Operation], init: Option<Value>) -> Result<(), (usize, usize)> {
    let (ops, classes) = junk_classes(ops);
    let ops = ops.as_slice();
    // Per class, its operations in invocation order and how many fired.
    let mut members: BTreeMap<JunkClass, Vec<usize>> = BTreeMap::new();
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| ops[i].invoked);
    for i in order {
        if let Some(c) = classes[i] {
            members.entry(c).or_default().push(i);
        }
    }
    let mut fired: BTreeMap<JunkClass, usize> = BTreeMap::new();
    let mut ev = Events::new(ops);
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Option<Value>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut state = init;
    let mut determinate_left = ops.iter().filter(|o| !o.is_indeterminate()).count();
    let mut furthest = (0usize, NIL);
    let mut entry = ev.next[HEAD];
    loop {
        // Whatever is left may take effect last, in any order, or never.
        if determinate_left == 0 {
            return Ok(());
        }
        if entry != NIL && ev.is_call[entry] {
            let op = ev.op[entry];
            let canonical = match classes[op] {
                None => true,
                Some(c) => {
                    let n = fired.get(&c).copied().unwrap_or(0);
                    members[&c].get(n) == Some(&op)
                }
            };
            let after = if canonical {
                apply(state, &ops[op])
            } else {
                None
            };
            // An optional operation that would change nothing need not fire.
            let useless = ops[op].is_indeterminate() && after == Some(state);
            if let Some(after) = after.filter(|_| !useless) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), after)) {
                    stack.push((op, state));
                    state = after;
                    ev.lift(op);
                    if let Some(c) = classes[op] {
                        *fired.entry(c).or_default() += 1;
                    }
                    if !ops[op].is_indeterminate() {
                        determinate_left -= 1;
                    }
                    entry = ev.next[HEAD];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = ev.next[entry];
        } else {
            if entry != NIL && entry >= furthest.0 {
                furthest = (entry, ev.op[entry]);
            }
            let Some((op, before)) = stack.pop() else {
                return Err(furthest);
            };
            state = before;
            linearized[op / 64] &= !(1 << (op % 64));
            ev.unlift(op);
            if let Some(c) = classes[op] {
                *fired.entry(c).or_default() -= 1;
            }
            if !ops[op].is_indeterminate() {
                determinate_left += 1;
            }
            entry = ev.next[ev.call_ev[op]];
        }
    }
}

/// The largest window worth searching for a minimal explanation.
const MAX_WINDOW: usize = 80;

/// Narrows a failed key history down to a small window around `stuck`.
fn explain(key: &str, ops: &[Operation], stuck: usize) -> Violation {
    let stuck = stuck.min(ops.len() - 1);
    let end = ops[stuck].completed;
    let mut prefix: Vec<Operation> = ops.iter().filter(|o| o.invoked < end).cloned().collect();
    prefix.sort_by_key(|o| (o.invoked, o.completed));
    let stuck_op = ops[stuck].clone();
    let pos = prefix
        .iter()
        .position(|o| o.invoked == stuck_op.invoked && o.client == stuck_op.client)
        .unwrap_or(prefix.len().saturating_sub(1));
    for start in (0..=pos).rev() {
        let opens = prefix[start].invoked;
        // Every operation still running when the window opens is in it,
        // except indeterminate ones, which may run for ever: of those, the
        // ones writing a value the window observes, and one per class of
        // the rest. The operations that finished before the window are
        // summed up by the states they can have left.
        let mut observed: HashSet<Value> = HashSet::new();
        for o in &prefix[start..] {
            match &o.outcome {
                Outcome::Read(Some(v)) => {
                    observed.insert(*v);
                }
                Outcome::Txn(Some(g)) => observed.extend(g.iter().flatten()),
                _ => {}
            }
        }
        // The writes of the values the window observes, for the reader.
        let writes_observed = |o: &Operation| {
            !o.is_indeterminate() && o.written().iter().flatten().any(|v| observed.contains(v))
        };
        let mut classes_taken = HashSet::new();
        let window: Vec<Operation> = prefix
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                *i >= start
                    || (o.completed >= opens && !o.is_indeterminate())
                    || writes_observed(o)
                    || (o.is_indeterminate()
                        && (o.written().iter().flatten().any(|v| observed.contains(v))
                            || classes_taken.insert(std::mem::discriminant(&o.call))))
            })
            .map(|(_, o)| o.clone())
            .collect();
        if window.len() > MAX_WINDOW {
            break;
        }
        let mut inits: Vec<Option<Value>> = vec![None];
        if start > 0 {
            for o in prefix[..start]
                .iter()
                .filter(|o| o.completed < opens || o.is_indeterminate())
            {
                inits.extend(o.written());
            }
        }
        inits.sort();
        inits.dedup();
        if search(&window, &inits).is_err() {
            return Violation {
                key: key.to_string(),
                stuck: stuck_op,
                window,
                minimal: true,
                epoch_note: String::new(),
            };
        }
    }
    let from = prefix.len().saturating_sub(MAX_WINDOW);
    Violation {
        key: key.to_string(),
        stuck: stuck_op,
        window: prefix[from..].to_vec(),
        minimal: false,
        epoch_note: String::new(),
    }
}
