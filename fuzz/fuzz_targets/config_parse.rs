//! The config loader (`config::Config::parse`) on arbitrary text: it must answer Ok or Err
//! (a clear reason for `strata check`), never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = strata::config::Config::parse(text, "fuzz.yaml");
});
