//! The component's frame decoder (`sio_cluster_adapter::wire`): any bytes,
//! as one frame and as a batch.
//!
//! Invariants: no panic; an accepted frame re-encodes to a frame that
//! decodes to the same envelope; a frame over the cap is refused as
//! `TooLarge`; the zero-copy broadcast view (`packed::BroadcastView`, the
//! host's fast path) accepts a frame only if the full decoder reads it as a
//! broadcast without acks, with the same options and packet bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sio_cluster_adapter::packed::{self, BroadcastView};
use sio_cluster_adapter::wire::{self, Message};
use sio_cluster_adapter::{Effect, FrameError, LocalOp};

fuzz_target!(|data: &[u8]| {
    // The cap: the default, or one under the input's length.
    let max = match data.first() {
        Some(b) if b & 1 == 1 => data.len().saturating_sub(1) as u32,
        _ => sio_cluster_adapter::DEFAULT_MAX_FRAME_BYTES,
    };
    match wire::decode(data, max) {
        Ok(env) => {
            assert!(data.len() as u32 <= max);
            let again = wire::encode(&env);
            let back = wire::decode(&again, u32::MAX).expect("a re-encoded frame decodes");
            assert_eq!(back, env);
            if let Some(view) = BroadcastView::parse(data, max) {
                match &env.msg {
                    Message::Broadcast {
                        opts,
                        packet,
                        ack: None,
                    } => {
                        assert_eq!((view.uid, view.nsp), (env.uid, env.nsp.as_str()));
                        let mut out = vec![packed::PACKED_VERSION];
                        view.push_apply(&mut out);
                        let want = Effect::Apply(LocalOp::Broadcast(opts.clone(), packet.clone()));
                        assert_eq!(packed::decode(&out), Ok((vec![want], vec![])));
                    }
                    other => panic!("broadcast view of a {other:?}"),
                }
            }
        }
        Err(FrameError::TooLarge(n)) => assert!(n > max || data.len() as u32 > max),
        Err(_) => {
            assert!(
                BroadcastView::parse(data, max).is_none(),
                "view of a refused frame"
            );
        }
    }
    // The same bytes as a batch of length-prefixed frames.
    for frame in wire::split_batch(data) {
        if let Ok(f) = frame {
            let _ = wire::decode(f, max);
        }
    }
});
