//! pool: I/O buffers lent to a connection only while it moves bytes. A connection waiting for
//! data holds no buffer at all: it borrows one right before a read, and hands it back at once
//! when the read would block. That is what keeps an idle connection at a few hundred bytes.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// The most a single read takes: large enough that a bulk transfer moves in few syscalls, and
/// what the reference reads too, so a 64 KiB message echoed by a target can come back whole.
pub const READ_SIZE: usize = 64 * 1024;

/// Size of one relay buffer: a read plus room in front of it, for a frame header (target
/// data) or so that a whole 64 KiB client frame, header included, fits one read; and room
/// behind it for the TLS records a 64 KiB frame is sealed into (5 of them, 32 bytes each at
/// most), so that `tls::stream` encrypts a whole frame into a pooled buffer. Without that
/// room it took a fresh zeroed 64 KiB `Vec` per frame: memset was 8 % of a wss:// transfer.
pub const BUF_SIZE: usize = READ_SIZE + 256;

/// Buffers kept per worker thread; more are freed on return.
const POOL_LIMIT: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A pooled buffer of `BUF_SIZE` bytes; goes back to its thread's pool when dropped.
pub struct Buf(Option<Box<[u8]>>);

impl Buf {
    pub fn take() -> Buf {
        let reused = POOL.with(|pool| pool.borrow_mut().pop());
        Buf(Some(
            reused.unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice()),
        ))
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            // `try_with`: during thread teardown the pool may already be gone; then just free.
            let _ = POOL.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < POOL_LIMIT {
                    pool.push(buf);
                }
            });
        }
    }
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_on_the_same_thread() {
        let first = Buf::take();
        let addr = first.as_ptr();
        assert_eq!(first.len(), BUF_SIZE);
        drop(first);
        let second = Buf::take();
        assert_eq!(second.as_ptr(), addr);
    }

    #[test]
    fn the_pool_keeps_at_most_its_limit_of_buffers() {
        POOL.with(|pool| pool.borrow_mut().clear());
        let taken: Vec<Buf> = (0..POOL_LIMIT + 3).map(|_| Buf::take()).collect();
        drop(taken);
        assert_eq!(POOL.with(|pool| pool.borrow().len()), POOL_LIMIT);
    }
}
