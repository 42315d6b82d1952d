//! The host's decoder of packed results (`sio_cluster_adapter::packed::decode`,
//! what `runtime::wasm_node` applies to every `on-frames-packed` answer of
//! the component, which a misbehaving component controls byte for byte).
//!
//! Invariants: no panic; an accepted result re-encodes (`push_effects`,
//! `push_error`) to bytes that decode to the same effects and errors; the
//! decoder never accepts a result that does not start with the version.
//! The same bytes also go to `packed::decode_opts` (the component's reader of
//! `broadcast-packed`'s options): no panic, and accepted options re-encode
//! to bytes that decode to the same options. And `packed::decode_broadcast`
//! (the host's decoder of `broadcast-packed` answers, which reuses the
//! call's own options and packet for the local effect that echoes them)
//! gives exactly what `packed::decode` gives, on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sio_cluster_adapter::packed;
use sio_cluster_adapter::{Effect, LocalOp, Opts};

fuzz_target!(|data: &[u8]| {
    match packed::decode_opts(data) {
        Ok(opts) => {
            let again = packed::decode_opts(&packed::encode_opts(&opts))
                .expect("re-encoded options decode");
            assert_eq!(again, opts);
        }
        Err(e) => assert!(!e.is_empty(), "an error names what is wrong"),
    }
    let plain = packed::decode(data);
    // The call's inputs: the first local broadcast's, so that the echo path
    // is taken whenever the bytes allow it.
    let owned = match &plain {
        Ok((effects, _)) => effects.iter().find_map(|e| match e {
            Effect::Apply(LocalOp::Broadcast(o, p)) => Some((o.clone(), p.clone())),
            _ => None,
        }),
        Err(_) => None,
    }
    .unwrap_or_else(|| (Opts::all(), Vec::new()));
    let opts = packed::encode_opts(&owned.0);
    assert_eq!(packed::decode_broadcast(data, &opts, owned), plain);
    match plain {
        Ok((effects, errors)) => {
            assert_eq!(data.first(), Some(&packed::PACKED_VERSION));
            let mut out = Vec::new();
            packed::start(&mut out);
            packed::push_effects(&mut out, &effects);
            for e in &errors {
                packed::push_error(&mut out, e);
            }
            let again = packed::decode(&out).expect("a re-encoded packed result decodes");
            assert_eq!(again, (effects, errors));
        }
        Err(e) => assert!(!e.is_empty(), "an error names what is wrong"),
    }
});
