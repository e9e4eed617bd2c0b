/* A single-phase extension module with process-wide C state, as most old extensions are:
 * CPython refuses it in own-GIL interpreters. Built by tests/test_isolation.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern int dep_bump(void); /* in the bundled library (ipt_pkg.libs/libiptdep.so) */

static long counter = 0;
static PyObject *first_interp = NULL; /* as many extensions do: one cached object */

static PyObject *bump(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(++counter);
}

static PyObject *dep(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(dep_bump());
}

static PyMethodDef methods[] = {
    {"bump", bump, METH_NOARGS, "Increment this copy's C counter and return it."},
    {"dep", dep, METH_NOARGS, "Increment the bundled library's counter and return it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_single", NULL, -1, methods};

PyMODINIT_FUNC PyInit__single(void) {
    PyObject *m = PyModule_Create(&def);
    if (m != NULL && first_interp == NULL) {
        first_interp = PyUnicode_FromString("cached");
    }
    return m;
}
