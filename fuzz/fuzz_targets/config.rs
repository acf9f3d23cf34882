//! The agent's JSON config file with its command-line flags, and
//! `cairn template`'s HCL config with its `-template`/`-wait` values.
//!
//! Input: `<first line>\n<rest>`. With a first byte of `h`, the rest is HCL
//! and the first line a flag value; otherwise the rest is the JSON file and
//! the first line's whitespace-separated words are flags.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
    if let Some(flag) = head.strip_prefix('h') {
        let _ = cairn::fuzzing::template_config(rest, flag);
    } else {
        let flags: Vec<String> = head.split_whitespace().map(String::from).collect();
        let _ = cairn::fuzzing::agent_config(rest.as_bytes(), &flags);
    }
});
