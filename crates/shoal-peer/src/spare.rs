//! [`Spares`]: large byte buffers kept for reuse once their bytes are sent.
//!
//! Piece uploads and blob bodies read a file into a buffer that lives until
//! the socket is done with it. A fresh large buffer costs more than the
//! read that fills it: the allocator zeroes it, and once it has handed the
//! pages back to the system, each 4 KiB page faults in again. A buffer
//! handed back here is reused as it is (its bytes are overwritten by the
//! next read), so a steady stream of reads of one size touches no new
//! memory. What is kept is bounded in bytes.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// A bounded set of buffers ready for reuse. Clones share it.
#[derive(Clone)]
pub struct Spares {
    shared: Arc<Mutex<Vec<Vec<u8>>>>,
    keep_bytes: usize,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares").field("kept", &self.kept()).field("keep_bytes", &self.keep_bytes).finish()
    }
}

impl Spares {
    /// Keep at most `keep_bytes` of buffers for reuse.
    pub fn new(keep_bytes: usize) -> Spares {
        Spares { shared: Arc::default(), keep_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes of buffers kept now (their capacity).
    pub fn kept(&self) -> usize {
        self.lock().iter().map(Vec::capacity).sum()
    }

    /// A buffer of `n` bytes with room for `capacity` (at least `n`): a
    /// kept one of about that capacity if there is one (holding old bytes,
    /// for the caller to overwrite), else a new one. Asking for the same
    /// `capacity` whatever `n` lets reads of varying lengths share buffers.
    pub fn take(&self, n: usize, capacity: usize) -> Vec<u8> {
        let capacity = capacity.max(n);
        let mut kept = self.lock();
        let fits = |b: &Vec<u8>| b.capacity() >= capacity && b.capacity() <= capacity.saturating_mul(2);
        let mut buf = match kept.iter().rposition(fits) {
            Some(i) => kept.swap_remove(i),
            None => {
                drop(kept);
                Vec::with_capacity(capacity)
            }
        };
        // Shortening writes nothing; lengthening zeroes only the new part,
        // within memory the buffer already has.
        buf.resize(n, 0);
        buf
    }

    /// Keep `buf` for reuse if there is room, else free it.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > self.keep_bytes {
            return;
        }
        let mut kept = self.lock();
        let total: usize = kept.iter().map(Vec::capacity).sum();
        if total + buf.capacity() <= self.keep_bytes {
            kept.push(buf);
        }
    }

    /// `buf` as [`Bytes`] that give it back here when the last reference
    /// is dropped.
    pub fn bytes(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returned { buf, spares: self.clone() })
    }
}

/// A buffer lent out as [`Bytes`]; back to its [`Spares`] on drop.
struct Returned {
    buf: Vec<u8>,
    spares: Spares,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.spares.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_and_kept_bytes_are_bounded() {
        let spares = Spares::new(16);
        let mut buf = spares.take(4, 8);
        buf.copy_from_slice(b"abcd");
        let ptr = buf.as_ptr();
        let bytes = spares.bytes(buf);
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(spares.kept(), 0, "still referenced");
        drop(copy);
        assert_eq!(spares.kept(), 8);
        // Another length, the same capacity: the same allocation, cut or
        // extended to the length asked for.
        let again = spares.take(6, 8);
        assert_eq!(again.as_ptr(), ptr, "the same allocation comes back");
        assert_eq!(&again[..4], b"abcd");
        assert_eq!(again.len(), 6);
        assert_eq!(spares.kept(), 0);
        // Nothing kept of a fitting capacity: a new zeroed buffer.
        spares.give(again);
        assert_eq!(spares.take(3, 3), vec![0; 3]);
        assert_eq!(spares.kept(), 8, "too large to spend on 3 bytes");
        // Over the bound: freed, not kept.
        spares.give(Vec::with_capacity(8));
        spares.give(Vec::with_capacity(8));
        assert_eq!(spares.kept(), 16);
        spares.give(Vec::with_capacity(17));
        assert_eq!(spares.kept(), 16);
    }
}
