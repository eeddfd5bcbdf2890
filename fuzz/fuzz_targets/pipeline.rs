//! Arbitrary bytes as a received frame, against the fixture's table, through the
//! whole pipeline. The first byte picks the AF_PACKET metadata (packet type,
//! checksum-offload flag); the rest is the frame. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uvs::pipeline::fixture::fuzz_one(data);
});
