//! Fitting an answer to its transport, as Consul's `trimUDPResponse` and
//! `trimTCPResponse` do:
//! - UDP without EDNS (or EDNS <= 512): at most `min(8, udp_answer_limit)`
//!   answers, then as many as fit 512 bytes (measured uncompressed, minus 8
//!   for the UDP header);
//! - UDP with EDNS: as many as fit the advertised size (compressed, minus 8);
//! - TCP: at most 4096 answers (1024 SRV) within 65523 bytes.
//!
//! Answers are dropped from the end (they are already shuffled) together
//! with the additional records that belong to them; the authority section
//! goes first. At least one answer is always kept.
//!
//! cairn trims before hickory encodes, so hickory's own truncation (which
//! drops whatever does not fit and sets TC) only ever fires for a single
//! answer too large for the transport. Whether a trimmed response carries
//! the TC bit is `dns_config.enable_truncate` (default false, like Consul:
//! the client gets a smaller but complete-looking answer instead of
//! retrying over TCP).

use super::answer::Answer;
use hickory_proto::op::Edns;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

/// Consul caps the usable EDNS size here (65535 minus IP/UDP headers).
const MAX_UDP_SIZE: usize = 65535 - 68;
/// DNS over TCP: a 64 KiB message less some framing overhead.
const MAX_TCP_SIZE: usize = 65523;
/// Consul's hard cap on answers in a plain 512-byte UDP response.
const MAX_UDP_ANSWERS: usize = 8;

/// The limits of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_answers: usize,
    pub max_bytes: usize,
    /// Measure the size with name compression (the real wire size) rather
    /// than the conservative uncompressed size.
    pub compressed: bool,
}

impl Budget {
    /// UDP with the request's EDNS payload size, if it sent EDNS.
    pub fn udp(edns_payload: Option<u16>, udp_answer_limit: usize) -> Budget {
        let size = edns_payload
            .map_or(512, |p| (p as usize).max(512))
            .min(MAX_UDP_SIZE);
        if size <= 512 {
            Budget {
                max_answers: MAX_UDP_ANSWERS.min(udp_answer_limit).max(1),
                max_bytes: 512 - 8,
                compressed: false,
            }
        } else {
            Budget {
                max_answers: usize::MAX,
                max_bytes: size - 8,
                compressed: true,
            }
        }
    }

    pub fn tcp(qtype: RecordType) -> Budget {
        let max_answers = if qtype == RecordType::SRV { 1024 } else { 4096 };
        Budget {
            max_answers,
            max_bytes: MAX_TCP_SIZE,
            compressed: true,
        }
    }

    /// How many answer records are worth building: no record encodes in
    /// fewer than 16 bytes (a compressed owner, type, class, TTL, length
    /// and an IPv4 address), so more than that can never be sent. One more
    /// than can be sent is built so that trimming (and TC) is noticed.
    pub fn answers_worth_building(&self) -> usize {
        self.max_answers.min(self.max_bytes / 16).saturating_add(1)
    }
}

/// Trims `a` to the budget. Returns whether anything was dropped.
/// `opt_len` is the size of the OPT record the response will carry (0
/// without EDNS; see [`opt_len`]).
pub fn fit(a: &mut Answer, question: &Name, opt_len: usize, budget: &Budget) -> bool {
    let mut trimmed = false;
    if a.answers.len() > budget.max_answers {
        keep_answers(a, budget.max_answers);
        trimmed = true;
    }
    if a.answers.len() <= 1 {
        return trimmed;
    }
    let fixed = 12 + name_len(question) + 4 + opt_len;
    let total = fixed
        + a.answers
            .iter()
            .chain(&a.authority)
            .chain(&a.additional)
            .map(record_len)
            .sum::<usize>();
    if total <= budget.max_bytes {
        // The common case: no per-record bookkeeping needed.
        return trimmed;
    }
    if budget.compressed && encoded_len(question, a, a.answers.len(), opt_len) <= budget.max_bytes {
        return trimmed;
    }
    // Too big: the authority section goes first, then answers from the end.
    a.authority.clear();
    let keep = if budget.compressed {
        // Largest k whose encoding fits, by binary search (k = 1 always stays).
        let (mut lo, mut hi) = (1, a.answers.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if encoded_len(question, a, mid, opt_len) <= budget.max_bytes {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    } else {
        let sizes: Vec<usize> = a.answers.iter().map(record_len).collect();
        let extra_sizes: Vec<usize> = a.additional.iter().map(record_len).collect();
        let extras_end = |k: usize| {
            if a.additional_ends.is_empty() {
                a.additional.len()
            } else {
                a.additional_ends[k - 1]
            }
        };
        let mut extra_prefix = Vec::with_capacity(extra_sizes.len() + 1);
        extra_prefix.push(0);
        for s in &extra_sizes {
            extra_prefix.push(extra_prefix.last().copied().unwrap_or(0) + s);
        }
        let mut keep = 1;
        let mut answer_sum = sizes[0];
        for k in 2..=sizes.len() {
            answer_sum += sizes[k - 1];
            if fixed + answer_sum + extra_prefix[extras_end(k)] > budget.max_bytes {
                break;
            }
            keep = k;
        }
        keep
    };
    keep_answers(a, keep);
    true
}

/// Wire size of the OPT record for `edns`: root owner, type, class, TTL and
/// length (11 bytes) plus each option's code, length and data.
pub fn opt_len(edns: Option<&Edns>) -> usize {
    edns.map_or(0, |e| {
        11 + e
            .options()
            .as_ref()
            .iter()
            .map(|(_, o)| 4 + o.len() as usize)
            .sum::<usize>()
    })
}

/// Keeps the first `k` answers and the additional records they need.
fn keep_answers(a: &mut Answer, k: usize) {
    a.answers.truncate(k);
    if !a.additional_ends.is_empty() {
        a.additional_ends.truncate(k);
        let end = a.additional_ends.last().copied().unwrap_or(0);
        a.additional.truncate(end);
    }
}

/// Uncompressed wire length of a name (`Name::len` counts the dots; the
/// wire form has a length byte per label and the root byte).
fn name_len(name: &Name) -> usize {
    if name.is_root() {
        1
    } else {
        name.len() + 1
    }
}

/// Uncompressed wire length of a record.
fn record_len(r: &Record) -> usize {
    let rdata = match &r.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(s) => 6 + name_len(&s.target),
        RData::CNAME(n) => name_len(&n.0),
        RData::NS(n) => name_len(&n.0),
        RData::PTR(n) => name_len(&n.0),
        RData::SOA(s) => name_len(&s.mname) + name_len(&s.rname) + 20,
        RData::TXT(t) => t.txt_data.iter().map(|s| s.len() + 1).sum(),
        other => other.to_bytes().map_or(0, |b| b.len()),
    };
    name_len(&r.name) + 10 + rdata
}

/// The compressed wire length of the response with the first `k` answers.
fn encoded_len(question: &Name, a: &Answer, k: usize, opt_len: usize) -> usize {
    let extras_end = if a.additional_ends.is_empty() {
        a.additional.len()
    } else {
        a.additional_ends
            .get(k.saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    // hickory echoes the question as raw bytes and never compresses later
    // names against it, so the question is written here the same way.
    let Ok(question) = question.to_bytes() else {
        return usize::MAX;
    };
    let mut buf = Vec::with_capacity(1024);
    let mut enc = BinEncoder::new(&mut buf);
    let header_and_question = enc
        .emit_vec(&[0u8; 12])
        .and_then(|_| enc.emit_vec(&question))
        .and_then(|_| enc.emit_vec(&[0u8; 4]));
    if header_and_question.is_err() {
        return usize::MAX;
    }
    let records = a.answers[..k]
        .iter()
        .chain(&a.authority)
        .chain(&a.additional[..extras_end.min(a.additional.len())]);
    for r in records {
        if r.emit(&mut enc).is_err() {
            return usize::MAX;
        }
    }
    buf.len() + opt_len
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::{A, SRV};
    use std::net::Ipv4Addr;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a_answer(n: usize) -> Answer {
        let q = name("web.service.consul.");
        let mut a = answer_skeleton();
        for i in 0..n {
            a.answers.push(Record::from_rdata(
                q.clone(),
                0,
                RData::A(A(Ipv4Addr::new(10, 0, (i / 256) as u8, i as u8))),
            ));
        }
        a
    }

    fn answer_skeleton() -> Answer {
        let mut a = Answer::error(ResponseCode::NoError);
        a.authoritative = true;
        a
    }

    fn srv_answer(n: usize) -> Answer {
        let q = name("web.service.consul.");
        let mut a = answer_skeleton();
        for i in 0..n {
            let target = name(&format!("node-{i}.node.dc1.consul."));
            a.answers.push(Record::from_rdata(
                q.clone(),
                0,
                RData::SRV(SRV::new(1, 1, 80, target.clone())),
            ));
            a.additional.push(Record::from_rdata(
                target,
                0,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i as u8))),
            ));
            a.additional_ends.push(a.additional.len());
        }
        a
    }

    #[test]
    fn plain_udp_caps_answers_at_the_limit() {
        let q = name("web.service.consul.");
        let mut a = a_answer(10);
        assert!(fit(&mut a, &q, 0, &Budget::udp(None, 3)));
        assert_eq!(a.answers.len(), 3);
        let mut a = a_answer(10);
        assert!(fit(&mut a, &q, 0, &Budget::udp(None, 20)));
        assert_eq!(a.answers.len(), 8);
        let mut a = a_answer(2);
        assert!(!fit(&mut a, &q, 0, &Budget::udp(None, 3)));
    }

    #[test]
    fn plain_udp_fits_512_bytes_with_additional_in_step() {
        let q = name("web.service.consul.");
        let mut a = srv_answer(8);
        assert!(fit(&mut a, &q, 0, &Budget::udp(None, 8)));
        assert!(a.answers.len() < 8 && !a.answers.is_empty());
        assert_eq!(a.additional.len(), a.answers.len());
        let total: usize = 12
            + name_len(&q)
            + 4
            + a.answers
                .iter()
                .chain(&a.additional)
                .map(record_len)
                .sum::<usize>();
        assert!(total <= 504, "{total}");
    }

    #[test]
    fn edns_fits_the_advertised_size() {
        let q = name("web.service.consul.");
        let mut a = srv_answer(100);
        assert!(fit(&mut a, &q, 11, &Budget::udp(Some(1232), 3)));
        let n = a.answers.len();
        assert!(n > 8 && n < 100, "{n}");
        assert!(encoded_len(&q, &a, n, 11) <= 1224);
        assert_eq!(a.additional.len(), n);
        let mut a = srv_answer(20);
        assert!(!fit(&mut a, &q, 11, &Budget::udp(Some(4096), 3)));
        assert_eq!(a.answers.len(), 20);
    }

    #[test]
    fn tcp_allows_large_answers() {
        let q = name("web.service.consul.");
        let mut a = a_answer(1000);
        assert!(!fit(&mut a, &q, 0, &Budget::tcp(RecordType::A)));
        assert_eq!(a.answers.len(), 1000);
        // hickory compresses only the first names of a message, so the
        // measured (real) size decides how many of 5000 fit in 64 KiB.
        let mut a = a_answer(5000);
        assert!(fit(&mut a, &q, 0, &Budget::tcp(RecordType::A)));
        let n = a.answers.len();
        assert!(n > 1000 && n <= 4096, "{n}");
        assert!(encoded_len(&q, &a, n, 0) <= MAX_TCP_SIZE);
        assert!(encoded_len(&q, &a_answer(n + 1), n + 1, 0) > MAX_TCP_SIZE);
    }

    #[test]
    fn uncompressed_length_matches_encoding_without_compression() {
        let a = srv_answer(1);
        let r = &a.answers[0];
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        r.emit(&mut enc).unwrap();
        assert_eq!(record_len(r), buf.len());
    }
}
