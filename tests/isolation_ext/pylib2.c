/* A bundled library without Python symbols of its own that needs libiptpy.so.1 (which links
 * against Python), as libarrow_python_flight.so needs libarrow_python.so: private too. */
extern long py_bump(void);

long py2_bump_twice(void) {
    py_bump();
    return py_bump();
}
