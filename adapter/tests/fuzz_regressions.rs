//! Inputs the coverage-guided fuzz targets (`fuzz/`) found, kept as tests.

use sio_cluster_adapter::{CLOSED_ERROR, Config, Effect, Node, Opts, RoomOwner};

/// `fuzz/fuzz_targets/node_sequence.rs`: `close`, then `fetch_rooms` with a
/// 1 ms request timeout. The request was registered but a closed node has
/// no deadline and its `tick` does nothing, so it never completed (the
/// host's caller waited forever). Requests started on a closed node now
/// fail at once, as the ones pending at `close` do.
#[test]
fn requests_started_after_close_fail_at_once() {
    for owner in [RoomOwner::Host, RoomOwner::Component] {
        let mut node = Node::new(Config::new(1, "/", owner));
        node.join("s1", &["s1".to_string(), "r".to_string()]);
        let _ = node.init(0);
        let _ = node.close(1);
        let mut started = Vec::new();
        let (id, fx) = node.fetch_rooms(2, Opts::rooms(["r"]));
        started.push((id, fx));
        let (id, fx) = node.fetch_sockets(2, Opts::all(), Some(1));
        started.push((id, fx));
        let (id, fx) = node.broadcast_with_ack(2, Opts::all(), vec![1], 1, false);
        started.push((id, fx));
        let (id, fx) = node.server_side_emit(2, b"[\"e\"]".to_vec(), true);
        started.push((id.expect("a request id"), fx));
        for (id, effects) in started {
            let done = effects.iter().find_map(|e| match e {
                Effect::Complete(c) if c.id == id => Some(c.clone()),
                _ => None,
            });
            let done = done
                .unwrap_or_else(|| panic!("{owner:?}: request {id} did not complete: {effects:?}"));
            assert_eq!(done.error.as_deref(), Some(CLOSED_ERROR));
        }
        assert_eq!(node.stats().pending_requests, 0);
        assert_eq!(node.next_deadline(), None);
    }
}
