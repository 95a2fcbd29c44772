# libFuzzer target for the message model (issue 4); included from tests/fuzz/CMakeLists.txt.
# The mail sources are compiled into the target (not linked from cimap_mail) so libFuzzer sees
# their coverage. Run: ./fuzz_mail -max_total_time=60 <scratch-dir> ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/mail
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  file(GLOB CIMAP_MAIL_FUZZ_SOURCES ${CMAKE_SOURCE_DIR}/frontend/mail/*.c)
  add_executable(fuzz_mail ${CMAKE_CURRENT_LIST_DIR}/fuzz_mail.c ${CIMAP_MAIL_FUZZ_SOURCES})
  target_compile_options(fuzz_mail PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_mail PRIVATE -fsanitize=fuzzer,address,undefined)
endif()
