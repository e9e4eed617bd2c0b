//! The CPython object layouts the codec reads in place, on its hot paths, instead of calling
//! the C API (docs/design.md, "Values"). Each layout is confirmed on first use with objects
//! made from known values; where it does not hold, the caller uses the C API instead.
use pyo3_ffi as ffi;

use crate::py::{Borrowed, Owned, Python};

/// The hash an exact `str` has cached (computed once, by its first `hash()`: every dict
/// key has one), or `None` if it has none yet. The caller has checked the type.
#[inline]
pub fn str_hash(obj: Borrowed<'_, '_>) -> Option<ffi::Py_hash_t> {
    // SAFETY: an exact str (caller's contract) starts with a `PyASCIIObject`, whose
    // `hash` field is aligned; CPython sets it once, with a relaxed atomic store in
    // free-threaded builds, so it is read atomically here.
    let hash = unsafe {
        let field = &raw mut (*obj.as_ptr().cast::<ffi::PyASCIIObject>()).hash;
        std::sync::atomic::AtomicIsize::from_ptr(field).load(std::sync::atomic::Ordering::Relaxed)
    };
    (hash != -1).then_some(hash)
}

/// The sign (`true`: negative) and magnitude of an `int` whose magnitude fits one 30-bit
/// digit, read in place; `None` for larger ints (use the C API). The caller has checked
/// that the object is an `int`.
///
/// CPython 3.12+ keeps such a "compact" int as its `PyObject` header, then `lv_tag`
/// (`ndigits << 3 | sign`, sign 0 positive, 1 zero, 2 negative) and the first 30-bit digit:
/// what its own `PyUnstable_Long_IsCompact` and `PyUnstable_Long_CompactValue` (inline
/// functions that pyo3-ffi does not bind) read. The layout is confirmed on first use
/// with ints made from known values, including a non-compact one; if it does not hold (a
/// build with 15-bit digits), this always answers `None`.
#[inline]
pub fn compact_int(obj: Borrowed<'_, '_>) -> Option<(bool, u32)> {
    static LAYOUT_HOLDS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*LAYOUT_HOLDS.get_or_init(|| compact_layout_holds(obj.py())) {
        return None;
    }
    // SAFETY: an int object (caller's contract), whose layout was confirmed.
    unsafe { compact_parts(obj.as_ptr()) }
}

/// An exact str's kind (bytes per character), length and characters.
#[inline(always)]
pub fn str_parts(obj: Borrowed<'_, '_>) -> (u32, isize, *const u8) {
    // SAFETY: an exact str (caller's check): its kind, length and data describe its
    // characters, which are immutable and owned by the object.
    unsafe {
        let (kind, len) = (ffi::PyUnicode_KIND(obj.as_ptr()), ffi::PyUnicode_GET_LENGTH(obj.as_ptr()));
        (kind, len, ffi::PyUnicode_DATA(obj.as_ptr()).cast::<u8>())
    }
}

/// Whether a 1-byte str is compact ASCII. CPython keeps the characters of a compact ASCII
/// string right after its `PyASCIIObject` header, and those of every other string elsewhere
/// (after the larger `PyCompactUnicodeObject` header, or in a separate block): that is how its
/// `_PyUnicode_COMPACT_DATA` finds them. The `ascii` bit itself is not reachable through
/// pyo3-ffi on 3.14, so the address tells; a check on the first use confirms the layout
/// (otherwise every 1-byte str goes as `STR1`, which the receiver scans).
#[inline]
pub fn is_compact_ascii(obj: Borrowed<'_, '_>, data: *const u8) -> bool {
    static LAYOUT_HOLDS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let after_header = |obj: Borrowed<'_, '_>, data: *const u8| {
        std::ptr::eq(data, obj.as_ptr().cast::<u8>().wrapping_add(std::mem::size_of::<ffi::PyASCIIObject>()))
    };
    let holds = *LAYOUT_HOLDS.get_or_init(|| {
        let py = obj.py();
        let (Ok(ascii), Ok(latin1)) = (py.str("a"), py.str("\u{e9}")) else {
            py.clear_exception();
            return false;
        };
        // SAFETY: two exact str objects, alive here.
        let data = |s: &Owned<'_>| unsafe { ffi::PyUnicode_DATA(s.as_ptr()).cast::<u8>() };
        after_header(ascii.borrowed(), data(&ascii)) && !after_header(latin1.borrowed(), data(&latin1))
    });
    holds && after_header(obj, data)
}

/// The start of a CPython 3.12+ int object (see [`compact_int`]).
#[repr(C)]
struct CompactLong {
    ob_base: ffi::PyObject,
    lv_tag: usize,
    digit: u32,
}

/// Sign and magnitude of a compact int as [`CompactLong`] describes it, `None` if not compact.
///
/// # Safety
/// `obj` is an int object; an int object has at least the fields of `CompactLong` (a header,
/// `lv_tag`, at least one digit) on every build this layout applies to.
#[inline]
unsafe fn compact_parts(obj: *mut ffi::PyObject) -> Option<(bool, u32)> {
    // SAFETY: the caller's contract.
    let (tag, digit) = unsafe { ((*obj.cast::<CompactLong>()).lv_tag, (*obj.cast::<CompactLong>()).digit) };
    (tag < 2 << 3).then_some((tag & 2 != 0, digit))
}

/// Whether [`CompactLong`] describes this CPython's ints: a few compact values read back as
/// themselves, and 2^30 (two digits) is not compact. A wrong layout reads wrong values, never
/// out of bounds.
#[cold]
fn compact_layout_holds(py: Python<'_>) -> bool {
    let read = |v: i64| -> Option<Option<(bool, u32)>> {
        let obj = py.int(v).ok()?;
        // SAFETY: an int object (see `compact_parts`).
        Some(unsafe { compact_parts(obj.as_ptr()) })
    };
    let compact = [0, 1, -1, 7, -300, 123_456_789, (1 << 30) - 1, -((1 << 30) - 1)];
    let holds = compact.iter().all(|&v| {
        read(v).flatten().is_some_and(|(negative, m)| if negative { -i64::from(m) } else { i64::from(m) } == v)
    }) && read(1 << 30) == Some(None);
    py.clear_exception();
    holds
}
