# libFuzzer target for the IMAP parser and sequence sets (clang only). Included from
# tests/fuzz/CMakeLists.txt. The parser sources are compiled into the target with the fuzzer and
# sanitizer flags rather than linked from cimap_parser, so every line is instrumented.
#   build-fuzz/tests/fuzz/fuzz_parser NEW_DIR tests/fuzz/corpus/parser -max_total_time=60
# (scripts/test.sh runs it for FUZZ_SECONDS on a copy of the corpus).
set(CIMAP_FUZZ_PARSER_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(fuzz_parser
  ${CIMAP_FUZZ_PARSER_DIR}/fuzz_parser.c
  ${CIMAP_FUZZ_PARSER_DIR}/../../frontend/parser.c
  ${CIMAP_FUZZ_PARSER_DIR}/../../frontend/seqset.c
  ${CIMAP_FUZZ_PARSER_DIR}/../../frontend/arena.c)
target_compile_options(fuzz_parser PRIVATE -fsanitize=fuzzer,address,undefined
                       -fno-sanitize-recover=all -fno-omit-frame-pointer)
target_link_options(fuzz_parser PRIVATE -fsanitize=fuzzer,address,undefined)

