/* A single-phase extension module that calls two bundled libraries private to each worker
 * (libiptpy2.so.1 -> libiptpy.so.1, which links against Python) and, through them, the shared
 * libiptdep.so. Built by tests/test_isolation.py. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern long py_bump(void);
extern int py_first_interp(void);
extern int py_dep(void);
extern long py2_bump_twice(void);

static PyObject *bump(PyObject *self, PyObject *unused) { return PyLong_FromLong(py_bump()); }
static PyObject *bump_twice(PyObject *self, PyObject *unused) { return PyLong_FromLong(py2_bump_twice()); }
static PyObject *first(PyObject *self, PyObject *unused) { return PyBool_FromLong(py_first_interp()); }
static PyObject *dep(PyObject *self, PyObject *unused) { return PyLong_FromLong(py_dep()); }

static PyMethodDef methods[] = {
    {"bump", bump, METH_NOARGS, "Increment libiptpy's counter and return it."},
    {"bump_twice", bump_twice, METH_NOARGS, "Increment it twice through libiptpy2 and return it."},
    {"first", first, METH_NOARGS, "Whether this interpreter is the first that used this libiptpy."},
    {"dep", dep, METH_NOARGS, "Increment the shared libiptdep's counter and return it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_pylinked", NULL, -1, methods};

PyMODINIT_FUNC PyInit__pylinked(void) {
    PyObject *m = PyModule_Create(&def);
#ifdef Py_GIL_DISABLED
    /* the main interpreter of a free-threaded build imports it too (its counters are not
     * touched concurrently there) */
    if (m != NULL && PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
