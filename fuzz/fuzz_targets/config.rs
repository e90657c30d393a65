//! Fuzzes the parser of `broodlink.json`: comment stripping, then serde with the key
//! path in errors, then validation. Whatever the file says, parsing must return a
//! config or an error to show the operator, never panic.

#![no_main]

use broodlink::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `Config::load` reads the file as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text) {
        Ok(config) => {
            // Validation ran: the limits the server divides by or loops on are positive.
            assert!(config.max_message_length >= 1 && config.max_history_per_room >= 1);
            assert!(config.lobby.history_limit >= 1 && config.limits.auth_timeout_seconds >= 1);
            assert!(!config.lobby.name.trim().is_empty());
        }
        Err(problem) => assert!(!problem.is_empty(), "an empty error message for {text:?}"),
    }
});
