# Registers the Python integration tests (tests/integration/test_*.py) with ctest. Each runs the
# binaries of this build tree against its own redis-server; sanitizer builds say so, so the tests
# skip their RSS bounds (ASan keeps freed memory in quarantine).
find_package(Python3 COMPONENTS Interpreter REQUIRED)
file(GLOB CIMAP_PY_TESTS CONFIGURE_DEPENDS "${CMAKE_SOURCE_DIR}/tests/integration/test_*.py")
if(CIMAP_SANITIZE)
  set(cimap_sanitized 1)
else()
  set(cimap_sanitized 0)
endif()
foreach(path IN LISTS CIMAP_PY_TESTS)
  get_filename_component(mod "${path}" NAME_WE)
  add_test(NAME py_${mod}
           COMMAND ${Python3_EXECUTABLE} -m unittest -v ${mod}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/tests/integration)
  set_tests_properties(py_${mod} PROPERTIES
    TIMEOUT 600
    ENVIRONMENT "CIMAPD=${CMAKE_BINARY_DIR}/cimapd;CIMAP_ADMIN=${CMAKE_BINARY_DIR}/cimap-admin;CIMAP_SANITIZED=${cimap_sanitized};ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endforeach()
