//! Unit tests of `read_flight.rs` (the rest is covered against real nodes in tests/replication.rs and tests/refill.rs).
use super::*;
use crate::backend::ErrorKind;

fn replica(index: usize, state: State) -> Replica {
    Replica {
        node: Arc::new(NodeInfo::new(
            index,
            format!("n{index}"),
            "h:1".into(),
            1,
            1,
        )),
        state,
        refilling: false,
    }
}

fn failed(index: usize, kind: ErrorKind) -> Replica {
    let mut r = replica(index, State::Unsent);
    r.state = State::Failed(NodeError::new(&r.node, kind, "x"));
    r
}

#[test]
fn a_failure_of_one_node_never_ends_the_read() {
    // A node's failure may be its own, refused credentials too (they are per node): the
    // read goes on to the next replica.
    let retryable: Vec<Replica> = ErrorKind::ALL
        .into_iter()
        .enumerate()
        .map(|(i, k)| failed(i, k))
        .chain([replica(9, State::Unsent)])
        .collect();
    assert!(final_failure(&retryable).is_none());
}
