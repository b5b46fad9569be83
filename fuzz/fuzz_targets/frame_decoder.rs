//! The streaming frame decoder against a simple whole-buffer model of RFC 6455 framing.
//!
//! The stream is fed to `Decoder::next` in pieces (see `common::split`), each piece at offset
//! 4 of its own buffer as the relay places its reads, and once more in one piece. Properties:
//! - both feeds report exactly what the model reports (so the split does not matter): the same
//!   payload bytes per message and kind, the same message ends, the same control frames;
//! - a protocol error is the same (close code 1002) and is reported in the piece that holds the
//!   last byte of the offending header, not before and not later;
//! - `Item::Payload` ranges lie inside the unread part of the buffer, and nothing in front of
//!   the read offset is touched;
//! - `Decoder::next` never allocates (whatever length a header announces);
//! - for close frames, `parse_close` agrees with the RFC's rules.
#![no_main]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::frames::{close_verdict, model, push, Event, Outcome};
use libfuzzer_sys::fuzz_target;
use websockify::codec::close::parse_close;
use websockify::codec::frame::{self, Decoder, Item};

/// Counts allocations, to check that the decoder makes none.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Where the relay puts what it reads.
const READ_OFFSET: usize = 4;
const FILL: u8 = 0xA5;

/// Feeds the pieces to the decoder as the relay does.
fn run(stream: &[u8], pieces: &[(usize, usize)]) -> Outcome {
    let mut out = Outcome::default();
    let mut decoder = Decoder::new();
    for &(a, b) in pieces {
        let mut buf = vec![FILL; READ_OFFSET];
        buf.extend_from_slice(&stream[a..b]);
        let mut pos = READ_OFFSET;
        loop {
            let before_pos = pos;
            let allocations = ALLOCATIONS.load(Ordering::Relaxed);
            let result = decoder.next(&mut buf, &mut pos);
            assert_eq!(
                ALLOCATIONS.load(Ordering::Relaxed),
                allocations,
                "Decoder::next allocated"
            );
            assert!(pos >= before_pos && pos <= buf.len(), "pos moved wrongly");
            assert!(buf[..READ_OFFSET].iter().all(|&x| x == FILL));
            match result {
                Err(err) => {
                    let code = err.code;
                    // Reported in this piece: the header's last byte is in [a, b).
                    let (_, at) = model_error_at(stream);
                    assert!(
                        a <= at && at < b,
                        "error reported in piece {a}..{b}, header ends at {at}"
                    );
                    out.error = Some((code, at));
                    return out;
                }
                Ok(Item::NeedMore) => {
                    assert_eq!(pos, buf.len(), "NeedMore with bytes left");
                    break;
                }
                Ok(Item::Payload {
                    start,
                    end,
                    kind,
                    end_of_message,
                }) => {
                    assert!(before_pos <= start && start <= end && end == pos);
                    push(&mut out.events, Event::Data(kind, buf[start..end].to_vec()));
                    if end_of_message {
                        out.events.push(Event::End);
                    }
                }
                Ok(Item::Control(control)) => {
                    assert!(control.payload().len() <= frame::MAX_CONTROL_PAYLOAD);
                    out.events
                        .push(Event::Control(control.opcode, control.payload().to_vec()));
                }
            }
        }
    }
    out.idle = decoder.is_idle();
    out
}

fn model_error_at(stream: &[u8]) -> (u16, usize) {
    model(stream)
        .error
        .expect("the decoder failed where the model sees no error")
}

/// `parse_close` agrees with the RFC's rules for close payloads.
fn check_close(payload: &[u8]) {
    let expected = close_verdict(payload).map(|(code, _)| code);
    match (parse_close(payload), expected) {
        (Ok(info), Ok(code)) => {
            assert_eq!(info.code, code);
            assert_eq!(info.reason.as_bytes(), &payload[payload.len().min(2)..]);
        }
        (Err(err), Err(code)) => assert_eq!(err.code, code),
        (got, want) => panic!("parse_close({payload:x?}) = {got:?}, expected {want:?}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let (stream, pieces) = common::split(input);
    let expected = model(stream);
    let whole = run(stream, &[(0, stream.len())]);
    assert_eq!(whole, expected, "one-shot decode differs from the model");
    let split = run(stream, &pieces);
    assert_eq!(split, expected, "split decode differs from the model");
    for event in &expected.events {
        if let Event::Control(frame::opcode::CLOSE, payload) = event {
            check_close(payload);
        }
    }
});
