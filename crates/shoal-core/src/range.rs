//! HTTP `Range: bytes=…` requests (RFC 9110 §14) resolved against a blob
//! size.
//!
//! Only single ranges are honoured; a multi-range or otherwise malformed
//! header is ignored (the whole blob is served with 200), which RFC 9110
//! allows and which every registry client copes with. A range that starts
//! at or past the end is unsatisfiable (416).

use std::ops::Range;

/// One requested byte range, before the blob size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=N-`: from N to the end (what containerd sends on a retry).
    From(u64),
    /// `bytes=N-M`: inclusive on both ends.
    FromTo(u64, u64),
    /// `bytes=-S`: the last S bytes.
    Suffix(u64),
}

/// The range cannot be served for a blob of this size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable for a blob of {size} bytes")]
pub struct RangeError {
    /// The blob size, for the `Content-Range: bytes */size` header.
    pub size: u64,
}

impl ByteRange {
    /// Parse a `Range` header value. `None` means "ignore the header":
    /// another unit, several ranges, or bad syntax.
    pub fn parse(header: &str) -> Option<ByteRange> {
        let spec = header.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, true) => None,
            (true, false) => Some(ByteRange::Suffix(num(b)?)),
            (false, true) => Some(ByteRange::From(num(a)?)),
            (false, false) => {
                let (s, e) = (num(a)?, num(b)?);
                (e >= s).then_some(ByteRange::FromTo(s, e))
            }
        }
    }

    /// The half-open byte range to send for a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>, RangeError> {
        let unsat = RangeError { size };
        match self {
            ByteRange::From(s) if s < size => Ok(s..size),
            ByteRange::FromTo(s, e) if s < size => Ok(s..e.saturating_add(1).min(size)),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok(size.saturating_sub(n)..size),
            _ => Err(unsat),
        }
    }
}

/// The `Content-Range` header value for a served range.
pub fn content_range(range: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{}", range.start, range.end - 1, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_forms() {
        assert_eq!(ByteRange::parse("bytes=10-"), Some(ByteRange::From(10)));
        assert_eq!(ByteRange::parse("bytes=0-99"), Some(ByteRange::FromTo(0, 99)));
        assert_eq!(ByteRange::parse("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(ByteRange::parse(" bytes= 3 - 4 "), Some(ByteRange::FromTo(3, 4)));
        for ignored in ["bytes=5-3", "bytes=-", "items=0-1", "bytes=0-1,3-4", "bytes=a-", "bytes=+1-2", ""] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn resolve_against_size() {
        assert_eq!(ByteRange::From(10).resolve(100), Ok(10..100));
        assert_eq!(ByteRange::FromTo(10, 1000).resolve(100), Ok(10..100));
        assert_eq!(ByteRange::FromTo(99, 99).resolve(100), Ok(99..100));
        assert_eq!(ByteRange::Suffix(30).resolve(100), Ok(70..100));
        assert_eq!(ByteRange::Suffix(300).resolve(100), Ok(0..100));
        assert_eq!(ByteRange::From(100).resolve(100), Err(RangeError { size: 100 }));
        assert_eq!(ByteRange::FromTo(0, 0).resolve(0), Err(RangeError { size: 0 }));
        assert_eq!(ByteRange::Suffix(0).resolve(10), Err(RangeError { size: 10 }));
        assert_eq!(ByteRange::FromTo(u64::MAX - 1, u64::MAX).resolve(10), Err(RangeError { size: 10 }));
    }

    #[test]
    fn content_range_header() {
        assert_eq!(content_range(&(10..100), 100), "bytes 10-99/100");
    }

    proptest! {
        #[test]
        fn resolved_ranges_lie_inside_the_blob(s in 0u64..1000, e in 0u64..1000, size in 0u64..1000) {
            for r in [ByteRange::From(s), ByteRange::FromTo(s.min(e), s.max(e)), ByteRange::Suffix(s)] {
                if let Ok(range) = r.resolve(size) {
                    prop_assert!(range.start < range.end && range.end <= size);
                }
            }
            let text = format!("bytes={s}-{}", s + e);
            prop_assert_eq!(ByteRange::parse(&text), Some(ByteRange::FromTo(s, s + e)));
        }
    }
}
