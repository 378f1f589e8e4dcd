//! Comparing the replicas' answers to a read: what counts as a miss, when two answers are the
//! same, and which answer wins a vote (`read_flight.rs` asks the replicas and repairs the losers).

use redis_protocol::resp2::types::BytesFrame;

use super::track::Outcome;
use crate::protocol::NodeReply;

/// Whether two replicas' replies to a read count as the same answer: the same bytes, or for
/// TTL / PTTL / EXPIRETIME / PEXPIRETIME two expiries (any values at or above 0). Each replica
/// set its expiry when the write reached it, so the figures differ by a millisecond or so
/// between replicas that agree; only "no key" (-2) and "no expiry" (-1) tell a real divergence.
pub fn same_answer(outcome: Outcome, a: &[u8], b: &[u8]) -> bool {
    fn expiry(raw: &[u8]) -> bool {
        raw.len() > 3 && raw.first() == Some(&b':') && raw.get(1) != Some(&b'-')
    }
    a == b || (outcome == Outcome::Ttl && expiry(a) && expiry(b))
}

/// Whether a read's reply found nothing, by the command's kind (as the layer statistics
/// count misses).
pub fn is_miss(outcome: Outcome, raw: &[u8]) -> bool {
    match outcome {
        Outcome::Read | Outcome::Mget | Outcome::GetDel => crate::protocol::is_nil_or_empty(raw),
        Outcome::Count | Outcome::Exists => raw == b":0\r\n",
        Outcome::Ttl => raw == b":-2\r\n",
        Outcome::Type => raw == b"+none\r\n",
        _ => false,
    }
}

/// Whether an answer could come from a replica that lacks some of the keys asked: a miss, an
/// MGET with a nil among its values, any EXISTS count. A refilling replica's such answers do
/// not vote (`cluster::refill`).
pub fn may_lack(outcome: Outcome, reply: &NodeReply) -> bool {
    match outcome {
        Outcome::Mget => match &reply.frame {
            BytesFrame::Array(values) => values.iter().any(|v| matches!(v, BytesFrame::Null)),
            _ => is_miss(outcome, &reply.raw),
        },
        Outcome::Exists => true,
        _ => is_miss(outcome, &reply.raw),
    }
}

/// The winning answer among `answers` ((replica position, raw reply), in preference order):
/// most votes; then a value over a miss (a restarted node comes back empty); then the earlier
/// replica. None when there is no answer.
pub fn winner<'a>(answers: &[(usize, &'a [u8])], outcome: Outcome) -> Option<(usize, &'a [u8])> {
    // (first answer of each distinct kind, votes), in preference order.
    let mut tally: Vec<((usize, &[u8]), usize)> = Vec::new();
    for &(i, raw) in answers {
        match tally
            .iter_mut()
            .find(|((_, first), _)| same_answer(outcome, first, raw))
        {
            Some((_, votes)) => *votes += 1,
            None => tally.push(((i, raw), 1)),
        }
    }
    // max_by_key keeps the last maximum: walking backwards, that is the earliest replica.
    tally
        .iter()
        .rev()
        .max_by_key(|((_, raw), votes)| (*votes, !is_miss(outcome, raw)))
        .map(|(first, _)| *first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_then_value_over_nil_then_earlier_replica() {
        let read = Outcome::Read;
        let a: &[u8] = b"$1\r\na\r\n";
        let b: &[u8] = b"$1\r\nb\r\n";
        let nil: &[u8] = b"$-1\r\n";
        assert_eq!(winner(&[(0, nil), (1, a), (2, a)], read), Some((1, a)));
        assert_eq!(winner(&[(0, nil), (1, a)], read), Some((1, a)));
        assert_eq!(winner(&[(0, b), (1, a)], read), Some((0, b)));
        assert_eq!(winner(&[(0, nil), (2, nil), (1, a)], read), Some((0, nil)));
        assert_eq!(winner(&[], read), None);
    }

    #[test]
    fn what_a_replica_lacking_keys_could_answer() {
        let reply = |raw: &'static [u8]| {
            let mut buf = bytes::BytesMut::from(raw);
            crate::protocol::decode_reply(&mut buf)
                .expect("valid")
                .expect("whole")
        };
        let mget = Outcome::Mget;
        assert!(may_lack(mget, &reply(b"*2\r\n$1\r\na\r\n$-1\r\n")));
        assert!(!may_lack(
            mget,
            &reply(b"*2\r\n$1\r\na\r\n$5\r\n$-1\r\n\r\n")
        ));
        assert!(may_lack(Outcome::Read, &reply(b"$-1\r\n")));
        assert!(!may_lack(Outcome::Read, &reply(b"$1\r\na\r\n")));
        assert!(may_lack(Outcome::Exists, &reply(b":2\r\n")));
        assert!(may_lack(Outcome::Ttl, &reply(b":-2\r\n")));
        assert!(!may_lack(Outcome::Ttl, &reply(b":-1\r\n")));
    }

    #[test]
    fn ttl_answers_agree_on_any_expiry() {
        let ttl = Outcome::Ttl;
        assert!(same_answer(ttl, b":299999\r\n", b":300000\r\n"));
        assert!(same_answer(ttl, b":0\r\n", b":12\r\n"));
        assert!(same_answer(ttl, b":-1\r\n", b":-1\r\n"));
        assert!(!same_answer(ttl, b":-1\r\n", b":300000\r\n"));
        assert!(!same_answer(ttl, b":-2\r\n", b":300000\r\n"));
        assert!(!same_answer(ttl, b":-2\r\n", b":-1\r\n"));
        assert!(!same_answer(Outcome::Count, b":1\r\n", b":2\r\n"));
        assert!(!same_answer(Outcome::Read, b"$1\r\na\r\n", b"$1\r\nb\r\n"));
    }
}
