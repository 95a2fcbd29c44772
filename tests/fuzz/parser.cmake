# libFuzzer target for the IMAP parser and sequence sets (clang only). Included from
# tests/fuzz/CMakeLists.txt. The parser sources are compiled into the target with the fuzzer and
# sanitizer flags rather than linked from cimap_parser, so every line is instrumented.
#   build/tests/fuzz/fuzz_parser NEW_DIR tests/fuzz/corpus/parser -max_total_time=60
set(CIMAP_FUZZ_PARSER_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(fuzz_parser
  ${CIMAP_FUZZ_PARSER_DIR}/fuzz_parser.c
  ${CIMAP_FUZZ_PARSER_DIR}/../../frontend/parser.c
  ${CIMAP_FUZZ_PARSER_DIR}/../../frontend/seqset.c
  ${CIMAP_FUZZ_PARSER_DIR}/../../frontend/arena.c)
target_compile_options(fuzz_parser PRIVATE -fsanitize=fuzzer,address,undefined
                       -fno-sanitize-recover=all -fno-omit-frame-pointer)
target_link_options(fuzz_parser PRIVATE -fsanitize=fuzzer,address,undefined)

# A bounded run for CI: new inputs go to a scratch directory, the seed corpus stays untouched.
add_test(NAME fuzz_parser
         COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
                 $<TARGET_FILE:fuzz_parser> -max_total_time=30 -timeout=10 -rss_limit_mb=2048
                 ${CMAKE_CURRENT_BINARY_DIR}/fuzz_parser_corpus ${CIMAP_FUZZ_PARSER_DIR}/corpus/parser)
add_custom_command(TARGET fuzz_parser POST_BUILD
                   COMMAND ${CMAKE_COMMAND} -E make_directory
                           ${CMAKE_CURRENT_BINARY_DIR}/fuzz_parser_corpus)
