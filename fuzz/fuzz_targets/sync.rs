//! See `uvs::fuzzing::sync` for the input format and the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uvs::fuzzing::sync(data);
});
