//! CRI container log files: whatever the container wrote, framed by the shim as
//! `<timestamp> <stream> <P|F> <text>` lines, read back by `berthctl logs`.
#![no_main]

use berth_ctl::cri_log::{Message, Parser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick where the file is cut into reads.
    let Some((cuts, log)) = data.split_first_chunk::<2>() else { return };
    let whole = read(log, &[]);
    let mut at: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * log.len() / 256).collect();
    at.sort_unstable();
    // However the bytes arrive, the same messages come out.
    assert_eq!(read(log, &at), whole);
    for message in &whole {
        assert!(!message.text.contains(&b'\n'));
    }
});

fn read(log: &[u8], cuts: &[usize]) -> Vec<Message> {
    let mut parser = Parser::default();
    let mut messages = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        messages.extend(parser.feed(&log[from..cut]));
        from = cut;
    }
    messages.extend(parser.feed(&log[from..]));
    messages.extend(parser.finish());
    messages
}
