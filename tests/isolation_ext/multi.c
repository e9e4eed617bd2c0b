/* A multi-phase extension module that does not declare Py_mod_multiple_interpreters, so
 * CPython refuses it in own-GIL interpreters; it keeps a C global. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long counter = 0;

static PyObject *bump(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(++counter);
}

static int exec_module(PyObject *m) {
    return PyModule_AddIntConstant(m, "EXECUTED", 1);
}

static PyMethodDef methods[] = {
    {"bump", bump, METH_NOARGS, "Increment this copy's C counter and return it."},
    {NULL, NULL, 0, NULL},
};

/* Thread-safe enough for its tests: free-threaded builds keep the GIL off when importing it. */
static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_multi", NULL, 0, methods, slots};

PyMODINIT_FUNC PyInit__multi(void) { return PyModuleDef_Init(&def); }
