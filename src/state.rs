//! Per-interpreter module state (`m_size`), and how entry points reach it.
//!
//! Each interpreter that imports `interpool._interpool` gets its own module object and so
//! its own [`State`]: its heap types, the hooks the Python package configured (the pickler
//! for values without a native form, the resolver of interpool's exception classes), caches
//! of the codec, and the exception classes once resolved. Like `_queuemodule.c`'s
//! `EmptyError`, exception classes live here, never in a static.
//!
//! This module is a leaf: it knows no type module. `module.rs` creates the types and stores
//! them here; the type modules read them back through `object::PyClass`.
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, PoisonError};

use pyo3_ffi as ffi;

use crate::py::{Borrowed, Owned, PyErr, PyResult, Python, Stashed};

/// A strong reference to an object of this interpreter, replaceable at run time (several
/// threads of one interpreter may use it at once in free-threaded builds). Like the
/// [`Stashed`] inside, neither `Send` nor `Sync`: a [`State`] stays with its interpreter.
#[derive(Default)]
pub struct Slot(Mutex<Option<Stashed>>);

impl Slot {
    /// A new reference to the object, if set (taken under the lock, so `set` cannot free it
    /// meanwhile).
    pub fn get<'py>(&self, py: Python<'py>) -> Option<Owned<'py>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|kept| kept.bind(py).to_owned())
    }

    /// Replace the object; the old one is released (attached to the state's interpreter, as
    /// `py` proves).
    pub fn set(&self, py: Python<'_>, obj: Option<Owned<'_>>) {
        let old = std::mem::replace(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner), obj.map(Owned::stash));
        if let Some(old) = old {
            old.release(py); // after the lock: a decref may run code that reads the slot
        }
    }

    fn visit(&self, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: GC traversal of a strong reference we own.
        kept.as_ref().map_or(0, |kept| unsafe { visit(kept.as_ptr(), arg) })
    }
}

/// Exception classes of the `interpool` package that Rust raises (resolved by name, through
/// the package's resolver, on first use).
#[derive(Clone, Copy, Debug)]
pub enum ErrorClass {
    NotShareableError = 0,
    QueueEmpty,
    QueueFull,
    QueueClosed,
}

const ERROR_CLASSES: usize = 4;

impl ErrorClass {
    fn name(self) -> &'static CStr {
        match self {
            ErrorClass::NotShareableError => c"NotShareableError",
            ErrorClass::QueueEmpty => c"QueueEmpty",
            ErrorClass::QueueFull => c"QueueFull",
            ErrorClass::QueueClosed => c"QueueClosed",
        }
    }
}

/// The classes of this module, created by `module.rs` at exec time.
#[derive(Default)]
pub struct Types {
    pub pool: Slot,
    pub ticket: Slot,
    pub queue: Slot,
    pub buffer: Slot,
    pub constant: Slot,
    /// `TaskInterrupted`, the exception that stops a running task (a `BaseException`).
    pub interrupted: Slot,
}

/// Hooks the Python package installs with `_configure()` in every interpreter.
#[derive(Default)]
pub struct Hooks {
    /// `dumps(obj) -> bytes` for values without a native form (cloudpickle-aware).
    pub dumps: Slot,
    /// `loads(bytes) -> obj`, its inverse.
    pub loads: Slot,
    /// `error_class(name) -> type`: interpool's exception classes.
    pub error_class: Slot,
}

pub struct State {
    pub types: Types,
    /// Raw type pointers, read on hot paths without locking (set once at exec, before any
    /// use; owned by `types`).
    type_ptrs: [*mut ffi::PyTypeObject; 5],
    pub hooks: Hooks,
    errors: [Slot; ERROR_CLASSES],
    /// Functions and classes sent by reference (see `globals.rs`).
    pub globals: crate::globals::Globals,
    /// Memory of this interpreter's objects that other interpreters borrow (see buffer.rs).
    pub pins: crate::pin::PinHome,
    /// `Constant`s decoded in this interpreter (see decoded.rs).
    pub constants: crate::decoded::ConstantCache,
}

impl State {
    pub fn new(py: Python<'_>) -> Self {
        State {
            types: Types::default(),
            type_ptrs: [std::ptr::null_mut(); 5],
            hooks: Hooks::default(),
            errors: Default::default(),
            globals: crate::globals::Globals::default(),
            pins: crate::pin::PinHome::new(py),
            constants: crate::decoded::ConstantCache::default(),
        }
    }

    /// Record the classes' types (exec time, before any instance exists).
    pub fn set_types(
        &mut self,
        py: Python<'_>,
        pool: Owned<'_>,
        ticket: Owned<'_>,
        queue: Owned<'_>,
        buffer: Owned<'_>,
    ) {
        for (i, tp) in [&pool, &ticket, &queue, &buffer].into_iter().enumerate() {
            self.type_ptrs[i] = tp.as_ptr().cast();
        }
        self.types.pool.set(py, Some(pool));
        self.types.ticket.set(py, Some(ticket));
        self.types.queue.set(py, Some(queue));
        self.types.buffer.set(py, Some(buffer));
    }

    pub fn pool_type(&self) -> *mut ffi::PyTypeObject {
        self.type_ptrs[0]
    }
    pub fn ticket_type(&self) -> *mut ffi::PyTypeObject {
        self.type_ptrs[1]
    }
    pub fn queue_type(&self) -> *mut ffi::PyTypeObject {
        self.type_ptrs[2]
    }
    pub fn buffer_type(&self) -> *mut ffi::PyTypeObject {
        self.type_ptrs[3]
    }
    pub fn constant_type(&self) -> *mut ffi::PyTypeObject {
        self.type_ptrs[4]
    }

    /// Record the `Constant` class's type (exec time, before any instance exists).
    pub fn set_constant_type(&mut self, py: Python<'_>, constant: Owned<'_>) {
        self.type_ptrs[4] = constant.as_ptr().cast();
        self.types.constant.set(py, Some(constant));
    }

    /// The state of the module that created heap type `tp`.
    ///
    /// # Safety
    /// `tp` is one of this module's heap types (made by `PyType_FromModuleAndSpec`), and the
    /// returned reference is used only while that type (and so its module) is alive.
    pub unsafe fn of_type<'a>(tp: *mut ffi::PyTypeObject) -> &'a State {
        // SAFETY: our types' module state holds the `*mut State` set at exec time, before any
        // of the module's types could be used.
        unsafe { &**ffi::PyType_GetModuleState(tp).cast::<*mut State>() }
    }

    /// Give the state to `module` (its exec slot; `module_free` takes it back).
    ///
    /// # Safety
    /// `module` is an `interpool._interpool` module object running its exec slot.
    pub unsafe fn install(module: Borrowed<'_, '_>, state: Box<State>) {
        // SAFETY: the module's state memory is `m_size` bytes for one `*mut State`, zeroed.
        unsafe { *Self::slot(module.as_ptr()) = Box::into_raw(state) };
    }

    /// The state of `module`, if its exec slot ran.
    ///
    /// # Safety
    /// `module` is an `interpool._interpool` module object, alive for `'a`.
    pub unsafe fn of_module<'a>(module: *mut ffi::PyObject) -> Option<&'a State> {
        // SAFETY: the slot holds null or the state `install` put there, owned by the module.
        unsafe { (*Self::slot(module)).as_ref() }
    }

    /// Take the state back from a module being freed (`None` if exec never ran).
    ///
    /// # Safety
    /// `module` is an `interpool._interpool` module object being freed.
    pub unsafe fn take(module: *mut ffi::PyObject) -> Option<Box<State>> {
        // SAFETY: the slot holds null or the box `install` leaked into it, taken back once.
        let state = std::mem::replace(unsafe { &mut *Self::slot(module) }, std::ptr::null_mut());
        // SAFETY: as above.
        (!state.is_null()).then(|| unsafe { Box::from_raw(state) })
    }

    /// # Safety
    /// `module` is an `interpool._interpool` module object.
    unsafe fn slot(module: *mut ffi::PyObject) -> *mut *mut State {
        // SAFETY: the caller's contract; our module's state memory holds one `*mut State`.
        unsafe { ffi::PyModule_GetState(module).cast::<*mut State>() }
    }

    /// `TaskInterrupted` of this interpreter.
    pub fn interrupted_class<'py>(&self, py: Python<'py>) -> PyResult<Owned<'py>> {
        self.types.interrupted.get(py).ok_or_else(|| py.system_error("TaskInterrupted is missing"))
    }

    /// The class `class`, resolved through the package's hook on first use.
    pub fn error_class<'py>(&self, py: Python<'py>, class: ErrorClass) -> PyResult<Owned<'py>> {
        let slot = &self.errors[class as usize];
        if let Some(found) = slot.get(py) {
            return Ok(found);
        }
        let Some(resolve) = self.hooks.error_class.get(py) else {
            return Err(not_configured(py));
        };
        let name = py.str(class.name().to_str().unwrap_or("?"))?;
        let found = resolve.borrowed().call1(name.borrowed())?;
        slot.set(py, Some(found.borrowed().to_owned()));
        Ok(found)
    }

    /// Raise `class(msg)`.
    pub fn raise(&self, py: Python<'_>, class: ErrorClass, msg: &str) -> PyErr {
        match self.error_class(py, class) {
            Ok(class) => py.raise(class.borrowed(), msg),
            Err(err) => err,
        }
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        let t = &self.types;
        let h = &self.hooks;
        [&t.pool, &t.ticket, &t.queue, &t.buffer, &t.constant, &t.interrupted, &h.dumps, &h.loads, &h.error_class]
            .into_iter()
            .chain(self.errors.iter())
    }

    /// GC traversal of every reference the state owns.
    pub fn traverse(&self, visit: ffi::visitproc, arg: *mut c_void) -> c_int {
        match self.slots().map(|s| s.visit(visit, arg)).find(|&r| r != 0) {
            Some(r) => r,
            None => match self.globals.traverse(visit, arg) {
                0 => self.constants.traverse(visit, arg),
                r => r,
            },
        }
    }

    /// Release every reference the state owns (GC clear, module free).
    pub fn clear(&self, py: Python<'_>) {
        for slot in self.slots() {
            slot.set(py, None);
        }
        self.globals.clear(py);
        self.constants.clear(py);
    }
}

/// The error when the package did not configure this interpreter.
pub fn not_configured(py: Python<'_>) -> PyErr {
    py.runtime_error("interpool is not configured in this interpreter: import interpool first")
}

/// The module object, seen by module-level functions.
#[derive(Clone, Copy)]
pub struct ModuleRef<'py>(Borrowed<'py, 'py>);

impl<'py> ModuleRef<'py> {
    /// # Safety
    /// `module` is an `interpool._interpool` module object whose exec slot has run.
    pub unsafe fn assume(module: Borrowed<'py, 'py>) -> Self {
        ModuleRef(module)
    }

    pub fn state(self) -> &'py State {
        // SAFETY: an initialized module (type invariant), alive for `'py`.
        unsafe { State::of_module(self.0.as_ptr()) }.expect("interpool._interpool was initialized")
    }
}

// A module state belongs to its interpreter: it cannot be moved to another thread, and no
// reference to it can enter a `Python::detached` closure (a decref there, as in
// `py.detached(|| state.hooks.dumps.set(py, None))`, does not compile).
crate::py::assert_not_impl!(State: Send, Sync);
crate::py::assert_not_impl!(Slot: Send, Sync);
