//! See `uvs::keepalived::fuzz_one` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uvs::keepalived::fuzz_one(data);
});
