/* A library bundled with a wheel that links against Python, as pyarrow's libarrow_python.so
 * does: its C globals belong to the interpreter that uses it, so isolate= gives each worker a
 * private copy under a SONAME of its own. It needs libiptdep.so (no Python: shared). */
#include <Python.h>

extern int dep_bump(void);

static long counter = 0;
static PyInterpreterState *first = NULL; /* as libarrow_python keeps the numpy it imported */

long py_bump(void) { return ++counter; }

/* 1 if the calling interpreter is the first one that called this copy. */
int py_first_interp(void) {
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (first == NULL) {
        first = interp;
    }
    return first == interp;
}

int py_dep(void) { return dep_bump(); }
