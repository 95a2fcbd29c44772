# libFuzzer target for the message model (issue 4); included from tests/fuzz/CMakeLists.txt.
# Needs clang: run e.g. ./fuzz_mail -max_total_time=60 ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/mail
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_mail ${CMAKE_CURRENT_LIST_DIR}/fuzz_mail.c)
  target_compile_options(fuzz_mail PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_mail PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_mail PRIVATE cimap_mail)
endif()
