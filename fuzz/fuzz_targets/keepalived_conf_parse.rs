//! See `uvs::keepalived::fuzz_parse` for the invariants checked (the parse-only half of
//! `keepalived_conf`: no control plane, so it runs fast enough for 10 M inputs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uvs::keepalived::fuzz_parse(data);
});
