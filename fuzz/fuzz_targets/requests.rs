//! The request path: frames decoded and run as one session's requests against a tree (writes
//! through `apply`, reads through the read path, containers reaped). Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrozk_server::fuzzing::run_frames(data);
});
