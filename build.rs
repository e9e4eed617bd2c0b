fn main() {
    // Emit cfg(Py_3_12), cfg(Py_3_13), cfg(Py_GIL_DISABLED), ... for the target Python.
    pyo3_build_config::use_pyo3_cfgs();
}
