//! The linearizability checker (`tests/common/linear.rs`) on histories
//! whose verdict is known.

mod common;

use common::linear::{
    check, check_bounded_staleness, check_stale_reads, Call, Operation, Outcome, StaleRead, TxnStep,
};
use std::time::Instant;

const NEVER: u64 = u64::MAX;

fn op(client: usize, call: Call, outcome: Outcome, invoked: u64, completed: u64) -> Operation {
    Operation {
        client,
        key: "k".into(),
        call,
        outcome,
        invoked,
        completed,
        via: String::new(),
    }
}

fn write(c: usize, v: u64, t0: u64, t1: u64) -> Operation {
    op(c, Call::Write(v), Outcome::Done, t0, t1)
}

fn read(c: usize, v: Option<u64>, t0: u64, t1: u64) -> Operation {
    op(c, Call::Read, Outcome::Read(v), t0, t1)
}

fn lost(c: usize, v: u64, t0: u64) -> Operation {
    op(c, Call::Write(v), Outcome::Indeterminate, t0, NEVER)
}

#[test]
fn sequential_history_is_linearizable() {
    let h = vec![
        read(0, None, 0, 1),
        write(0, 1, 2, 3),
        read(1, Some(1), 4, 5),
        op(0, Call::Delete, Outcome::Done, 6, 7),
        read(1, None, 8, 9),
    ];
    check(&h).unwrap();
}

#[test]
fn stale_read_after_a_completed_write_is_a_violation() {
    let h = vec![
        write(0, 1, 0, 10),
        write(0, 2, 20, 30),
        read(1, Some(1), 40, 50),
    ];
    let v = check(&h).unwrap_err();
    assert_eq!(v.stuck.outcome, Outcome::Read(Some(1)));
    assert!(v.minimal);
    // The second write and the read prove the violation; the write of the
    // value read is shown too.
    assert_eq!(v.window.len(), 3, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("write 1") && text.contains("write 2"),
        "{text}"
    );
}

#[test]
fn lost_acknowledged_write_is_a_violation() {
    let h = vec![
        write(0, 1, 0, 10),
        write(1, 2, 20, 30),
        read(0, Some(1), 40, 50),
        read(1, Some(1), 60, 70),
    ];
    assert!(check(&h).is_err());
}

#[test]
fn read_of_a_value_never_written_is_a_violation() {
    let h = vec![write(0, 1, 0, 10), read(1, Some(7), 20, 30)];
    let v = check(&h).unwrap_err();
    assert_eq!(v.window.len(), 1, "{v}");
    assert_eq!(v.window[0].outcome, Outcome::Read(Some(7)));
}

#[test]
fn read_of_absent_after_completed_write_is_a_violation() {
    let h = vec![write(0, 1, 0, 10), read(1, None, 20, 30)];
    assert!(check(&h).is_err());
}

#[test]
fn concurrent_ops_linearize_in_either_order() {
    // The read overlaps the write: it may see the old or the new value.
    for seen in [None, Some(1)] {
        let h = vec![write(0, 1, 0, 100), read(1, seen, 10, 20)];
        check(&h).unwrap();
    }
    // Two overlapping writes, then reads agreeing on either winner.
    for last in [1, 2] {
        let h = vec![
            write(0, 1, 0, 100),
            write(1, 2, 50, 150),
            read(2, Some(last), 200, 210),
            read(0, Some(last), 220, 230),
        ];
        check(&h).unwrap();
    }
    // But once one reader saw the winner, a later one cannot see the loser.
    let h = vec![
        write(0, 1, 0, 100),
        write(1, 2, 50, 150),
        read(2, Some(2), 200, 210),
        read(0, Some(1), 220, 230),
    ];
    assert!(check(&h).is_err());
}

#[test]
fn indeterminate_write_may_appear_late() {
    // Timed out at 10, but took effect after the first read.
    let h = vec![
        lost(0, 1, 0),
        read(1, None, 20, 30),
        read(1, Some(1), 40, 50),
        read(2, Some(1), 60, 70),
    ];
    check(&h).unwrap();
}

#[test]
fn indeterminate_write_may_never_appear() {
    let h = vec![
        lost(0, 1, 0),
        read(1, None, 20, 30),
        read(1, None, 1000, 1010),
    ];
    check(&h).unwrap();
}

#[test]
fn indeterminate_write_cannot_appear_before_its_invocation() {
    let h = vec![read(1, Some(1), 0, 10), lost(0, 1, 20)];
    assert!(check(&h).is_err());
}

#[test]
fn indeterminate_write_cannot_flicker() {
    // Once it took effect it cannot be undone by itself.
    let h = vec![
        lost(0, 1, 0),
        read(1, Some(1), 20, 30),
        read(1, None, 40, 50),
    ];
    assert!(check(&h).is_err());
}

#[test]
fn cas_cases() {
    let cas = |c, e, n, ok, t0, t1| {
        op(
            c,
            Call::Cas {
                expected: e,
                new: n,
            },
            Outcome::Cas(ok),
            t0,
            t1,
        )
    };
    // cas=0 on an absent key succeeds; the next cas=0 fails.
    check(&[
        cas(0, None, 1, true, 0, 10),
        cas(1, None, 2, false, 20, 30),
        read(2, Some(1), 40, 50),
    ])
    .unwrap();
    // Two CASes from the same version cannot both succeed.
    let h = vec![
        write(0, 1, 0, 10),
        cas(1, Some(1), 2, true, 20, 30),
        cas(2, Some(1), 3, true, 20, 30),
    ];
    assert!(check(&h).is_err());
    // A failed CAS is a read: it cannot fail while the key holds `expected`.
    let h = vec![write(0, 1, 0, 10), cas(1, Some(1), 2, false, 20, 30)];
    assert!(check(&h).is_err());
    // A CAS that timed out may or may not have swapped.
    let ind = op(
        1,
        Call::Cas {
            expected: Some(1),
            new: 2,
        },
        Outcome::Indeterminate,
        20,
        NEVER,
    );
    check(&[write(0, 1, 0, 10), ind.clone(), read(2, Some(2), 40, 50)]).unwrap();
    check(&[write(0, 1, 0, 10), ind.clone(), read(2, Some(1), 40, 50)]).unwrap();
    // ... but not from a version it did not expect.
    let h = vec![
        write(0, 1, 0, 10),
        write(0, 5, 11, 12),
        ind,
        read(2, Some(2), 40, 50),
    ];
    assert!(check(&h).is_err());
}

#[test]
fn txn_on_one_key() {
    let txn = |c, steps, out, t0, t1| op(c, Call::Txn(steps), Outcome::Txn(out), t0, t1);
    let cas_get = |e, n| {
        vec![
            TxnStep::Cas {
                expected: e,
                new: n,
            },
            TxnStep::Get,
        ]
    };
    // A txn's get sees its own set.
    check(&[
        write(0, 1, 0, 10),
        txn(1, cas_get(Some(1), 2), Some(vec![Some(2)]), 20, 30),
        read(2, Some(2), 40, 50),
    ])
    .unwrap();
    // A rolled-back txn wrote nothing.
    check(&[
        write(0, 1, 0, 10),
        txn(1, cas_get(Some(9), 2), None, 20, 30),
        read(2, Some(1), 40, 50),
    ])
    .unwrap();
    let h = vec![
        write(0, 1, 0, 10),
        txn(1, cas_get(Some(9), 2), None, 20, 30),
        read(2, Some(2), 40, 50),
    ];
    assert!(check(&h).is_err());
    // A txn that claims success from the wrong version.
    let h = vec![
        write(0, 1, 0, 10),
        txn(1, cas_get(None, 2), Some(vec![Some(2)]), 20, 30),
    ];
    assert!(check(&h).is_err());
}

#[test]
fn keys_are_checked_apart() {
    let mut a = write(0, 1, 0, 10);
    a.key = "a".into();
    let mut b = read(1, None, 20, 30);
    b.key = "b".into();
    check(&[a.clone(), b]).unwrap();
    let mut bad = read(1, None, 20, 30);
    bad.key = "a".into();
    let v = check(&[a, bad]).unwrap_err();
    assert_eq!(v.key, "a");
}

#[test]
fn bounded_staleness_relaxes_only_the_marked_reads() {
    let mut r = read(1, Some(1), 40, 50);
    r.via = "default".into();
    let h = vec![write(0, 1, 0, 10), write(0, 2, 20, 30), r];
    assert!(check(&h).is_err());
    check_bounded_staleness(&h, |o| o.via == "default", 25).unwrap();
    assert!(check_bounded_staleness(&h, |o| o.via == "default", 5).is_err());
    assert!(check_bounded_staleness(&h, |_| false, 25).is_err());
}

#[test]
fn stale_reads_are_monotonic_per_session() {
    let w = vec![write(0, 1, 0, 10), write(0, 2, 20, 30)];
    let sr = |c: usize, v: Option<u64>, mi: u64, idx: u64, t: u64| StaleRead {
        client: c,
        agent: "c1".into(),
        key: "k".into(),
        invoked: t,
        completed: t + 5,
        value: v,
        modify_index: mi,
        index: idx,
    };
    // Lagging is fine, as long as it never goes back.
    check_stale_reads(
        &[
            sr(1, None, 0, 3, 5),
            sr(1, Some(1), 5, 5, 40),
            sr(1, Some(2), 7, 7, 50),
        ],
        &w,
    )
    .unwrap();
    // Another session may lag further behind.
    check_stale_reads(&[sr(1, Some(2), 7, 7, 40), sr(2, Some(1), 5, 5, 50)], &w).unwrap();
    let back = check_stale_reads(&[sr(1, Some(2), 7, 7, 40), sr(1, Some(1), 5, 5, 50)], &w);
    assert!(back.unwrap_err().contains("back in time"));
    let never = check_stale_reads(&[sr(1, Some(9), 9, 9, 40)], &w);
    assert!(never.unwrap_err().contains("no write wrote"));
    let early = check_stale_reads(&[sr(1, Some(2), 7, 7, 5)], &w);
    assert!(early.unwrap_err().contains("before it was written"));
    let absent_again = check_stale_reads(&[sr(1, Some(2), 7, 7, 40), sr(1, None, 0, 6, 50)], &w);
    assert!(absent_again.is_err());
}

/// A register simulated sequentially by several clients whose operations
/// overlap at random, recorded as a concurrent history: it must pass, and
/// fast.
#[test]
fn big_random_valid_history_checks_fast() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let keys = ["a", "b", "c", "d", "e"];
    let mut state: Vec<Option<u64>> = vec![None; keys.len()];
    let mut history = Vec::new();
    let mut value = 0u64;
    let clients = 8;
    let mut busy_until = vec![0u64; clients];
    // Each step happens at time t (its linearization point); the op's
    // interval is stretched around t without overlapping the client's own
    // previous op.
    for step in 0..6000u64 {
        let t = step * 100 + 1000;
        let c = (next() % clients as u64) as usize;
        let k = (next() % keys.len() as u64) as usize;
        let invoked = busy_until[c].max(t - (next() % 900)) + 1;
        let invoked = invoked.min(t);
        let completed = t + next() % 900;
        busy_until[c] = completed;
        let s = state[k];
        value += 1;
        let (call, outcome) = match next() % 6 {
            0 | 1 => {
                state[k] = Some(value);
                (Call::Write(value), Outcome::Done)
            }
            2 | 3 => (Call::Read, Outcome::Read(s)),
            4 => {
                let expected = if next() % 2 == 0 { s } else { Some(value - 1) };
                let ok = expected == s;
                if ok {
                    state[k] = Some(value);
                }
                (
                    Call::Cas {
                        expected,
                        new: value,
                    },
                    Outcome::Cas(ok),
                )
            }
            _ => {
                if next() % 4 == 0 {
                    state[k] = None;
                    (Call::Delete, Outcome::Done)
                } else {
                    state[k] = Some(value);
                    (Call::Write(value), Outcome::Indeterminate)
                }
            }
        };
        let completed = if outcome == Outcome::Indeterminate {
            busy_until[c] = t;
            u64::MAX
        } else {
            completed
        };
        history.push(Operation {
            client: c,
            key: keys[k].into(),
            call,
            outcome,
            invoked,
            completed,
            via: String::new(),
        });
    }
    let started = Instant::now();
    check(&history).unwrap();
    let took = started.elapsed();
    assert!(took.as_secs() < 10, "checking 6000 ops took {took:?}");

    // The same history with one read made stale is caught: a read, after
    // the write of the value it saw completed, of a value whose write
    // completed before that write began.
    let found = (0..history.len()).rev().find_map(|i| {
        let r = &history[i];
        let Outcome::Read(Some(v)) = r.outcome else {
            return None;
        };
        let w = history.iter().find(|o| {
            o.key == r.key
                && o.completed < r.invoked
                && matches!((&o.call, &o.outcome), (Call::Write(x), Outcome::Done) if *x == v)
        })?;
        let older = history.iter().find_map(|o| match (&o.call, &o.outcome) {
            (Call::Write(x), Outcome::Done) if o.key == r.key && o.completed < w.invoked => {
                Some(*x)
            }
            _ => None,
        })?;
        Some((i, older))
    });
    let (i, older) = found.expect("the random history has a read to make stale");
    history[i].outcome = Outcome::Read(Some(older));
    let started = Instant::now();
    let v = check(&history).unwrap_err();
    assert!(started.elapsed().as_secs() < 10);
    assert_eq!(v.key, history[i].key);
    assert!(v.minimal && v.window.len() < 40, "{v}");
}
