//! The codec's wire format: one flat byte string per [`Value`](interpool_core::Value).
//!
//! Each item starts with a one-byte tag; lengths and counts are LEB128 varints; all fixed-size
//! numbers are little-endian.
//!
//! | tag | payload | builds |
//! |---|---|---|
//! | `NONE`, `TRUE`, `FALSE` | - | the singletons |
//! | `INT4` | 4 bytes, i32 | `int` of magnitude below 2^30 (CPython's "compact" ints) |
//! | `INT` | zigzag varint | any other `int` within i64 |
//! | `BIGINT` | varint n, n bytes two's complement (3.13+) | any `int` |
//! | `BIGHEX` | varint n, n ASCII bytes of `hex()` (3.12) | any `int` |
//! | `FLOAT` | 8 bytes | `float` |
//! | `ASCII` | varint n, n bytes | an ASCII `str` |
//! | `ASCII_KEY` | varint n, 8-byte hash, n bytes | an ASCII `str` with its hash (dict keys) |
//! | `STR1`/`STR2`/`STR4` | varint chars, chars x width bytes | `str` at its PEP 393 width |
//! | `BYTES`, `BYTEARRAY` | varint n, n bytes | `bytes`, `bytearray` |
//! | `TUPLE`, `LIST`, `SET`, `FROZENSET` | varint n, n items | containers (memoized) |
//! | `DICT` | varint n, n (key, value) pairs | `dict` (memoized) |
//! | `PICKLE` | varint n, n bytes | `loads(bytes)` (memoized) |
//! | `PICKLE_OOB` | varint k, k x (`BUFFER` index), then a `PICKLE` item | `loads(bytes, buffers)` with the k buffers the sender lent (pickle protocol 5 out-of-band buffers; memoized once) |
//! | `GLOBAL` | varint n, `module\0qualname` | a function or class by reference |
//! | `QUEUE`, `BUFFER` | varint handle index | the shared queue or memory |
//! | `LENT_BYTES` | varint handle index | `bytes`, copied from memory the sender lent (`encode.rs`) |
//! | `MEMO` | varint index | the n-th memoized object again |
//! | `CONSTANT` | varint handle index | the receiver's cached object of an `interpool.Constant` |
//!
//! `ASCII_KEY` carries the hash the sender's str had cached, so that the receiver's dict need
//! not compute it again: str hashes depend on the hash secret, which is one per process and
//! shared by all its interpreters, and values never leave the process.
//!
//! Memoized objects are numbered in the order their tags appear. A list, dict or set exists
//! from its tag on, so `MEMO` may refer to one still being filled (cycles); a tuple or
//! frozenset exists only once complete, so the encoder never refers to an unfinished one (it
//! pickles such a value whole instead).
use std::collections::TryReserveError;

pub const NONE: u8 = 0;
pub const TRUE: u8 = 1;
pub const FALSE: u8 = 2;
pub const INT: u8 = 3;
pub const BIGINT: u8 = 4;
pub const BIGHEX: u8 = 5;
pub const FLOAT: u8 = 6;
pub const STR1: u8 = 7;
pub const STR2: u8 = 8;
pub const STR4: u8 = 9;
pub const BYTES: u8 = 10;
pub const BYTEARRAY: u8 = 11;
pub const TUPLE: u8 = 12;
pub const LIST: u8 = 13;
pub const DICT: u8 = 14;
pub const SET: u8 = 15;
pub const FROZENSET: u8 = 16;
pub const PICKLE: u8 = 17;
pub const GLOBAL: u8 = 18;
pub const QUEUE: u8 = 19;
pub const BUFFER: u8 = 20;
pub const MEMO: u8 = 21;
pub const CONSTANT: u8 = 22;
pub const ASCII: u8 = 23;
pub const LENT_BYTES: u8 = 24;
pub const ASCII_KEY: u8 = 25;
pub const INT4: u8 = 26;
pub const PICKLE_OOB: u8 = 27;

/// An append-only buffer whose growth is fallible: a value too large for memory becomes a
/// `MemoryError`, never an abort.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    /// Room for `additional` more bytes (the check is inlined; growth is not).
    #[inline]
    pub fn reserve(&mut self, additional: usize) -> Result<(), TryReserveError> {
        if self.buf.capacity() - self.buf.len() < additional {
            return self.grow(additional);
        }
        Ok(())
    }

    #[cold]
    fn grow(&mut self, additional: usize) -> Result<(), TryReserveError> {
        let needed = self.buf.len().saturating_add(additional);
        if let Some(mut reused) = interpool_core::spare::take(needed) {
            reused.extend_from_slice(&self.buf);
            let old = std::mem::replace(&mut self.buf, reused);
            interpool_core::spare::give(old);
            return Ok(());
        }
        // At least 64 bytes: a small value then takes one allocation, not three or four.
        self.buf.try_reserve(additional.max(64))
    }

    #[inline]
    pub fn tag(&mut self, tag: u8) -> Result<(), TryReserveError> {
        self.reserve(1)?;
        self.buf.push(tag);
        Ok(())
    }

    #[cfg(test)]
    pub fn varint(&mut self, v: u64) -> Result<(), TryReserveError> {
        self.reserve(10)?;
        self.put_varint(v);
        Ok(())
    }

    /// A varint, with room for it reserved.
    #[inline]
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A tag followed by 4 bytes (little-endian): one 8-byte store.
    #[inline(always)]
    pub fn head4(&mut self, tag: u8, v: u32) -> Result<(), TryReserveError> {
        self.put_word(u64::from(tag) | u64::from(v) << 8, 5)
    }

    /// A tag followed by a varint. Values below 2^49 (a tag and at most 7 bytes: every count,
    /// length and nearly every int) take one 8-byte store.
    #[inline(always)]
    pub fn head(&mut self, tag: u8, v: u64) -> Result<(), TryReserveError> {
        let tag = u64::from(tag);
        if v < 1 << 7 {
            return self.put_word(tag | v << 8, 2);
        }
        if v < 1 << 14 {
            return self.put_word(tag | (v & 0x7f | 0x80) << 8 | (v >> 7) << 16, 3);
        }
        if v >= 1 << 49 {
            return self.long_head(tag as u8, v);
        }
        let (mut word, mut n, mut v) = (tag, 1, v);
        while v >= 0x80 {
            word |= (v & 0x7f | 0x80) << (8 * n);
            v >>= 7;
            n += 1;
        }
        word |= v << (8 * n);
        self.put_word(word, n + 1)
    }

    #[inline(never)]
    fn long_head(&mut self, tag: u8, v: u64) -> Result<(), TryReserveError> {
        self.reserve(11)?;
        self.buf.push(tag);
        self.put_varint(v);
        Ok(())
    }

    /// Append the low `n` bytes of `word` (little-endian) with one unaligned 8-byte store.
    #[inline(always)]
    fn put_word(&mut self, word: u64, n: usize) -> Result<(), TryReserveError> {
        self.reserve(8)?;
        let n = n.min(8);
        let len = self.buf.len();
        // SAFETY: `reserve(8)` left room for 8 bytes after `len`, so the store stays inside the
        // allocation; the first `n <= 8` of them are then initialized.
        unsafe {
            self.buf.as_mut_ptr().add(len).cast::<[u8; 8]>().write_unaligned(word.to_le_bytes());
            self.buf.set_len(len + n);
        }
        Ok(())
    }

    #[inline]
    pub fn raw(&mut self, data: &[u8]) -> Result<(), TryReserveError> {
        self.reserve(data.len())?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// A tag, a varint, then the bytes.
    #[inline]
    pub fn head_raw(&mut self, tag: u8, v: u64, data: &[u8]) -> Result<(), TryReserveError> {
        self.reserve(16 + data.len())?;
        self.head(tag, v)?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// A tag, the length, then the bytes.
    #[inline]
    pub fn blob(&mut self, tag: u8, data: &[u8]) -> Result<(), TryReserveError> {
        self.head_raw(tag, data.len() as u64, data)
    }
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The bytes of a value were not written by this codec (a bug, never user input). Reading
/// never goes past the end of the bytes nor panics: every read checks its bounds, and counts
/// are checked against what is left ([`Reader::count`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt;

/// Reads what a [`Writer`] wrote.
#[derive(Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    #[inline]
    pub fn byte(&mut self) -> Result<u8, Corrupt> {
        let b = *self.data.get(self.pos).ok_or(Corrupt)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn skip(&mut self, n: usize) {
        self.pos += n;
    }

    /// The next byte, not consumed.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// If the next item is `tag` followed by 4 bytes, those (as written by
    /// [`Writer::head4`]; all consumed); else `None` (nothing consumed).
    #[inline(always)]
    pub fn tagged4(&mut self, tag: u8) -> Option<u32> {
        match self.data.get(self.pos..self.pos + 5) {
            Some(&[t, a, b, c, d]) if t == tag => {
                self.pos += 5;
                Some(u32::from_le_bytes([a, b, c, d]))
            }
            _ => None,
        }
    }

    /// A varint: one or two bytes (values below 16384) inline, longer ones out of line.
    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, Corrupt> {
        match self.data.get(self.pos..self.pos + 2) {
            Some(&[b0, _]) if b0 < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b0))
            }
            Some(&[b0, b1]) if b1 < 0x80 => {
                self.pos += 2;
                Ok(u64::from(b0 & 0x7f) | u64::from(b1) << 7)
            }
            _ => self.long_varint(),
        }
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Corrupt)
    }

    /// A varint used as a size.
    #[inline]
    pub fn size(&mut self) -> Result<usize, Corrupt> {
        usize::try_from(self.varint()?).map_err(|_| Corrupt)
    }

    /// The bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// A count of items that take at least `min_bytes` each (every item starts with its tag):
    /// a count that the rest of the value cannot hold is corrupt, so a corrupt count never
    /// makes the decoder allocate a container it cannot fill.
    #[inline]
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, Corrupt> {
        let n = self.size()?;
        match n.checked_mul(min_bytes) {
            Some(needed) if needed <= self.remaining() => Ok(n),
            _ => Err(Corrupt),
        }
    }

    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.pos.checked_add(n).ok_or(Corrupt)?;
        let out = self.data.get(self.pos..end).ok_or(Corrupt)?;
        self.pos = end;
        Ok(out)
    }

    /// A length-prefixed byte string.
    #[inline]
    pub fn blob(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.size()?;
        self.take(n)
    }

    #[inline]
    pub fn f64(&mut self) -> Result<f64, Corrupt> {
        Ok(f64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Corrupt)?))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn varints_and_zigzag_round_trip() {
        let mut w = Writer::default();
        let values = [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1 << 40];
        for v in values {
            w.varint(zigzag(v)).unwrap();
        }
        let mut r = Reader::new(&w.buf);
        for v in values {
            assert_eq!(unzigzag(r.varint().unwrap()), v);
        }
        assert!(r.at_end());
        assert!(r.byte().is_err(), "reading past the end is an error, not a panic");
    }

    /// Varints at every length boundary (1 to 10 bytes), as `head` writes them inline or out
    /// of line.
    const BOUNDARIES: [u64; 20] = [
        0,
        1,
        127,
        128,
        (1 << 14) - 1,
        1 << 14,
        (1 << 21) - 1,
        1 << 21,
        (1 << 28) - 1,
        1 << 28,
        (1 << 35) - 1,
        1 << 35,
        (1 << 42) - 1,
        1 << 42,
        (1 << 49) - 1,
        1 << 49,
        (1 << 56) - 1,
        1 << 56,
        (1 << 63) - 1,
        u64::MAX,
    ];

    #[test]
    fn heads_round_trip_at_every_varint_length() {
        for v in BOUNDARIES {
            let mut w = Writer::default();
            w.head(STR1, v).unwrap();
            w.varint(v).unwrap();
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.byte(), Ok(STR1));
            assert_eq!(r.varint(), Ok(v), "head({v})");
            assert_eq!(r.varint(), Ok(v), "varint({v})");
            assert!(r.at_end());
        }
    }

    /// One item of each kind a `Writer` writes, and how a `Reader` reads it back.
    #[derive(Clone, Debug)]
    enum Item {
        Tag(u8),
        Head(u8, u64),
        Head4(u8, u32),
        Blob(u8, Vec<u8>),
        Float(f64),
    }

    impl Item {
        fn write(&self, w: &mut Writer) {
            match self {
                Item::Tag(t) => w.tag(*t),
                Item::Head(t, v) => w.head(*t, *v),
                Item::Head4(t, v) => w.head4(*t, *v),
                Item::Blob(t, data) => w.blob(*t, data),
                Item::Float(v) => w.tag(FLOAT).and_then(|()| w.raw(&v.to_le_bytes())),
            }
            .unwrap();
        }

        /// Read the item back: `Ok(true)` if it is what was written.
        fn read(&self, r: &mut Reader<'_>) -> Result<bool, Corrupt> {
            Ok(match self {
                Item::Tag(t) => r.byte()? == *t,
                Item::Head(t, v) => r.byte()? == *t && r.varint()? == *v,
                Item::Head4(t, v) => r.tagged4(*t).ok_or(Corrupt)? == *v,
                Item::Blob(t, data) => r.byte()? == *t && r.blob()? == &data[..],
                Item::Float(v) => r.byte()? == FLOAT && r.f64()?.to_bits() == v.to_bits(),
            })
        }
    }

    fn items() -> impl Strategy<Value = Item> {
        let tag = 0u8..=INT4;
        prop_oneof![
            tag.clone().prop_map(Item::Tag),
            (tag.clone(), prop_oneof![any::<u64>(), 0u64..20_000, prop::sample::select(&BOUNDARIES[..])])
                .prop_map(|(t, v)| Item::Head(t, v)),
            (tag.clone(), any::<u32>()).prop_map(|(t, v)| Item::Head4(t, v)),
            (tag, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(t, d)| Item::Blob(t, d)),
            any::<f64>().prop_map(Item::Float),
        ]
    }

    proptest! {
        /// Any sequence of items reads back as written, and nothing is left over.
        #[test]
        fn items_round_trip(items in prop::collection::vec(items(), 0..40)) {
            let mut w = Writer::default();
            for item in &items {
                item.write(&mut w);
            }
            let mut r = Reader::new(&w.buf);
            for item in &items {
                prop_assert_eq!(item.read(&mut r), Ok(true), "{:?}", item);
            }
            prop_assert!(r.at_end());
        }

        /// Every item cut short at every byte reads as an error (`tagged4`: as no match), never
        /// as a value, a panic or a read past the end.
        #[test]
        fn truncated_items_are_errors(item in items()) {
            let mut w = Writer::default();
            item.write(&mut w);
            for cut in 0..w.buf.len() {
                let mut r = Reader::new(&w.buf[..cut]);
                prop_assert!(item.read(&mut r).is_err(), "{:?} cut at {}", item, cut);
            }
        }

        /// Arbitrary bytes: every read either succeeds within the bytes or fails.
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..64), ops in prop::collection::vec(0u8..8, 1..32)) {
            let mut r = Reader::new(&data);
            for op in ops {
                let before = r.remaining();
                let _ = match op {
                    0 => r.byte().map(drop),
                    1 => r.varint().map(drop),
                    2 => r.size().map(drop),
                    3 => r.count(1).map(drop),
                    4 => r.blob().map(drop),
                    5 => r.f64().map(drop),
                    6 => r.take(3).map(drop),
                    _ => r.tagged4(INT4).map(drop).ok_or(Corrupt),
                };
                prop_assert!(r.remaining() <= before);
            }
        }
    }

    #[test]
    fn a_varint_longer_than_ten_bytes_is_corrupt() {
        let data = [0x80u8; 11];
        assert_eq!(Reader::new(&data).varint(), Err(Corrupt));
        assert_eq!(Reader::new(&data[..10]).varint(), Err(Corrupt), "truncated");
    }

    #[test]
    fn a_count_the_rest_cannot_hold_is_corrupt() {
        let mut w = Writer::default();
        w.head(LIST, 3).unwrap();
        w.raw(&[NONE, NONE, NONE]).unwrap();
        let mut r = Reader::new(&w.buf[1..]);
        assert_eq!(r.clone().count(1), Ok(3));
        assert_eq!(r.clone().count(2), Err(Corrupt), "3 pairs need 6 bytes");
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&huge).count(1), Err(Corrupt));
        assert_eq!(Reader::new(&huge).count(usize::MAX), Err(Corrupt), "no overflow");
        assert_eq!(Reader::new(&[3, NONE, NONE]).count(1), Err(Corrupt), "one item short");
        assert_eq!(r.count(1), Ok(3));
        assert_eq!(r.remaining(), 3);
    }

    #[test]
    fn a_length_past_the_end_is_corrupt() {
        let mut w = Writer::default();
        w.head(BYTES, u64::MAX).unwrap();
        let mut r = Reader::new(&w.buf[1..]);
        assert_eq!(r.blob(), Err(Corrupt));
        assert_eq!(Reader::new(&[5, 1, 2]).blob(), Err(Corrupt));
        assert_eq!(Reader::new(&[1, 2, 3]).take(usize::MAX), Err(Corrupt), "no overflow");
    }
}
