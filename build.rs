fn main() {
    // Emit cfg(Py_3_12), cfg(Py_3_13), cfg(Py_GIL_DISABLED), ... for the target Python.
    pyo3_build_config::use_pyo3_cfgs();
    // cfg(private_dict_api): the target CPython exports `_PyDict_FromItems` and
    // `_PyDict_SetItem_Take2` (3.13 and 3.14; declared in its internal headers, so each new
    // release is checked before it is added here). The codec builds dicts faster with them.
    println!("cargo:rustc-check-cfg=cfg(private_dict_api)");
    let config = pyo3_build_config::get();
    // The interpreter the crate is built for: the Rust tests embed it (src/testing.rs) and find
    // its standard library from it.
    println!("cargo:rustc-env=INTERPOOL_TEST_PYTHON={}", config.executable().unwrap_or_default());
    let abi = config.target_abi();
    let version = config.version();
    if matches!(abi.implementation(), pyo3_build_config::PythonImplementation::CPython)
        && matches!(abi.kind(), pyo3_build_config::PythonAbiKind::VersionSpecific(_))
        && version.major == 3
        && (13..=14).contains(&version.minor)
    {
        println!("cargo:rustc-cfg=private_dict_api");
    }
}
