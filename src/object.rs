//! Python objects whose payload is a Rust value: the one place that allocates, reads and
//! frees instances of interpool's heap types.
//!
//! An instance of a class `T` is laid out as `#[repr(C)] Cell<T> { PyObject, T }`. The
//! value is written once, right after allocation (before anything else can see the object),
//! read through [`Instance::get`] while the object is alive, and dropped in `tp_dealloc`.
//! Classes are final (no `Py_TPFLAGS_BASETYPE`), so an object of a class's type always has
//! that class's layout.
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3_ffi as ffi;

use crate::py::{Borrowed, Owned, PyResult, Python, free_instance};
use crate::state::State;

#[repr(C)]
struct Cell<T> {
    ob_base: ffi::PyObject,
    value: T,
}

/// A Rust type exposed as a Python class of this module.
pub trait PyClass: Sized + 'static {
    /// The class's heap type in the interpreter that owns `state`.
    fn type_object(state: &State) -> *mut ffi::PyTypeObject;
}

/// `basicsize` for a class's `PyType_Spec`.
pub const fn basicsize<T>() -> std::ffi::c_int {
    std::mem::size_of::<Cell<T>>() as std::ffi::c_int
}

/// An object known to be an instance of class `T`, alive for `'a`.
pub struct Instance<'a, T> {
    obj: Borrowed<'a, 'a>,
    _class: PhantomData<&'a T>,
}

impl<T> Clone for Instance<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Instance<'_, T> {}

impl<'a, T: PyClass> Instance<'a, T> {
    /// # Safety
    /// `obj` is an instance of `T`'s heap type whose value was initialized.
    pub unsafe fn assume(obj: Borrowed<'a, 'a>) -> Self {
        Instance { obj, _class: PhantomData }
    }

    /// `obj` as an instance of `T`, if it is one (`state` is the interpreter's module state).
    pub fn downcast(obj: Borrowed<'a, 'a>, state: &State) -> Option<Self> {
        // SAFETY: the type check guarantees the layout and the initialized value.
        obj.is_exactly(T::type_object(state)).then(|| unsafe { Self::assume(obj) })
    }

    /// The Rust value.
    pub fn get(self) -> &'a T {
        // SAFETY: an instance of `T`'s type (construction contract) has the `Cell<T>` layout
        // with an initialized value, alive as long as the object (`'a`).
        unsafe { &(*self.obj.as_ptr().cast::<Cell<T>>()).value }
    }

    /// The module state of the interpreter this object belongs to.
    pub fn state(self) -> &'a State {
        // SAFETY: our classes are heap types created by this module; the state outlives
        // every instance (instances hold their type, which holds the module).
        unsafe { State::of_type(self.obj.type_ptr()) }
    }

    pub fn obj(self) -> Borrowed<'a, 'a> {
        self.obj
    }
}

/// Allocate an instance of `tp` (a heap type of class `T`) holding `value`.
pub fn new_instance<'py, T: PyClass>(py: Python<'py>, tp: *mut ffi::PyTypeObject, value: T) -> PyResult<Owned<'py>> {
    // SAFETY: attached; `tp` is one of our heap types, whose tp_alloc returns zeroed memory
    // of `basicsize::<T>()` bytes, or null with an exception.
    let obj = unsafe { py.own(ffi::PyType_GenericAlloc(tp, 0))? };
    // SAFETY: the fresh allocation has the `Cell<T>` layout; the value field is
    // uninitialized, so it is written without dropping, before the object is shared.
    unsafe { std::ptr::write(&raw mut (*obj.as_ptr().cast::<Cell<T>>()).value, value) };
    Ok(obj)
}

/// `new_instance` for the class's own type in the interpreter owning `state`.
pub fn new_object<'py, T: PyClass>(py: Python<'py>, state: &State, value: T) -> PyResult<Owned<'py>> {
    new_instance(py, T::type_object(state), value)
}

/// Drop the Rust value and free the object: the body of every `tp_dealloc`. A panic of the
/// value's destructor goes to `report` (the trampoline's), never unwinds into C.
///
/// # Safety
/// `obj` is an instance of `T`'s heap type whose refcount reached zero; attached.
pub unsafe fn drop_instance<T: PyClass>(obj: *mut ffi::PyObject, report: impl FnOnce(Box<dyn std::any::Any + Send>)) {
    // SAFETY: reading the type of the dying object; untracked before anything else, as every
    // GC object's dealloc starts (the GC must not see it half-destroyed).
    let tp = unsafe {
        ffi::PyObject_GC_UnTrack(obj.cast());
        ffi::Py_TYPE(obj)
    };
    // SAFETY: the value was initialized at allocation and is dropped exactly once, here.
    let value = unsafe { std::ptr::read(&raw const (*obj.cast::<Cell<T>>()).value) };
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| drop(value))) {
        report(panic); // what the value held is leaked
    }
    // SAFETY: the value is gone; free the memory and the instance's reference to its type.
    unsafe { free_instance(obj, tp) }
}
