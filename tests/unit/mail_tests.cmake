# Unit tests of the message model (frontend/mail, issue 4). Included from tests/unit/CMakeLists.txt.
cimap_unit_test(test_mail LIBS cimap_mail)
cimap_unit_test(test_mail_section LIBS cimap_mail)
cimap_unit_test(test_mail_search LIBS cimap_mail)
cimap_unit_test(test_mail_fixtures LIBS cimap_mail)
target_compile_definitions(test_mail_fixtures PRIVATE
  MAIL_FIXTURE_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures/mail")
