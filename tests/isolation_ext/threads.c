/* A multi-phase extension module (refused in own-GIL interpreters: no
 * Py_mod_multiple_interpreters) whose own threads call back into Python through
 * PyGILState_Ensure, as Arrow's thread pool and Cython's `with gil` callbacks do. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>

struct call {
    PyObject *callable;
    long result;
    int failed;
};

static void call_it(struct call *c) {
    PyGILState_STATE state = PyGILState_Ensure();
    PyObject *out = PyObject_CallNoArgs(c->callable);
    if (out == NULL) {
        PyErr_Clear();
        c->failed = 1;
    } else {
        c->result = PyLong_AsLong(out);
        Py_DECREF(out);
    }
    PyGILState_Release(state);
}

static void *thread_main(void *arg) {
    call_it((struct call *)arg);
    return NULL;
}

/* call_in_thread(callable) -> int: call it on a new thread of this module's own. */
static PyObject *call_in_thread(PyObject *self, PyObject *callable) {
    struct call c = {callable, 0, 0};
    pthread_t thread;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&thread, NULL, thread_main, &c);
    if (rc == 0) {
        pthread_join(thread, NULL);
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        return PyErr_Format(PyExc_OSError, "pthread_create failed: %d", rc);
    }
    if (c.failed) {
        return PyErr_Format(PyExc_RuntimeError, "the call in the thread failed");
    }
    return PyLong_FromLong(c.result);
}

/* call_detached(callable) -> int: on the calling thread, with its thread state detached, as
 * in a copy's Py_BEGIN_ALLOW_THREADS; and once more with it attached (nested). */
static PyObject *call_detached(PyObject *self, PyObject *callable) {
    struct call c = {callable, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    call_it(&c);
    Py_END_ALLOW_THREADS
    if (!c.failed) {
        long detached = c.result;
        call_it(&c);
        if (!c.failed && c.result != detached) {
            return PyErr_Format(PyExc_RuntimeError, "nested: %ld, detached: %ld", c.result, detached);
        }
    }
    if (c.failed) {
        return PyErr_Format(PyExc_RuntimeError, "the call failed");
    }
    return PyLong_FromLong(c.result);
}

static PyMethodDef methods[] = {
    {"call_in_thread", call_in_thread, METH_O, "Call it on a thread of this module's own."},
    {"call_detached", call_detached, METH_O, "Call it detached, then nested, on this thread."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_threads", NULL, 0, methods, slots};

PyMODINIT_FUNC PyInit__threads(void) { return PyModuleDef_Init(&def); }
