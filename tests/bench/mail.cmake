# Benchmark of the message model (issue 4): build target mail_bench, run ./mail_bench [fixture-dir].
add_executable(mail_bench ${CMAKE_CURRENT_LIST_DIR}/mail_bench.c)
target_link_libraries(mail_bench PRIVATE cimap_mail)
target_compile_definitions(mail_bench PRIVATE MAIL_FIXTURE_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures/mail")
