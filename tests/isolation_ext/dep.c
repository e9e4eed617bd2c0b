/* A library bundled with a wheel (auditwheel's <dist>.libs): one instance per process. */
static int dep_counter = 0;

int dep_bump(void) { return __atomic_add_fetch(&dep_counter, 1, __ATOMIC_SEQ_CST); }
