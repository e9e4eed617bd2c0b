/* An extension module whose init function fails. */
#include <Python.h>

PyMODINIT_FUNC PyInit__broken(void) {
    PyErr_SetString(PyExc_RuntimeError, "this module refuses to start");
    return NULL;
}
