fn main() {
    // src/gilstate.rs: the PyGILState_Ensure/Release stand-ins of each slot, exported under the
    // names the isolation loader writes into a worker's copies (the lengths of CPython's names).
    let mut exports = String::new();
    for slot in 0..256 {
        exports.push_str(&format!(
            "/// `PyGILState_Ensure` of slot {slot}'s copies.\n#[unsafe(no_mangle)]\npub extern \"C\" fn ip_gs_ensure_{slot:04x}() -> ffi::PyGILState_STATE {{\n    ensure({slot})\n}}\n\
             /// `PyGILState_Release` of slot {slot}'s copies.\n#[unsafe(no_mangle)]\npub extern \"C\" fn ip_gs_release_{slot:04x}(state: ffi::PyGILState_STATE) {{\n    release(state)\n}}\n"
        ));
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("gilstate_exports.rs"), exports).expect("OUT_DIR is writable");
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
