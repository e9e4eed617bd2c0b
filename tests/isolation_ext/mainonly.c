/* Loads in the main interpreter only: its exec slot fails in any other, isolated or not. */
#include <Python.h>

static int exec_module(PyObject *m) {
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_RuntimeError, "_mainonly works in the main interpreter only");
        return -1;
    }
    return PyModule_AddStringConstant(m, "WHERE", "main");
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_mainonly", NULL, 0, NULL, slots};

PyMODINIT_FUNC PyInit__mainonly(void) { return PyModuleDef_Init(&def); }
