//! Any text as a `busbar.toml`: the configuration loads or is refused with its key, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = busbar::config::Config::from_toml(text);
    }
});
