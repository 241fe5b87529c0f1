# zerodet_add_test(NAME SOURCES a.cc b.cc LIBS zerodet_x ... [LABELS concurrent ...])
# Builds one GoogleTest executable and registers each test case with CTest. Tests find the shared
# data (models, images, COCO subset) and the source tree through compile definitions. Suites of
# concurrent code carry the label "concurrent": the ThreadSanitizer job builds (target
# zerodet_concurrent_tests) and runs those.
function(zerodet_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} zerodet_test_support GTest::gtest
                        GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    ZERODET_SHARED_DIR="${ZERODET_SHARED_DIR}"
    ZERODET_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    ZERODET_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set(labels ${ARG_LABELS})
  if(NOT labels)
    set(labels unit)
  endif()
  # The ThreadSanitizer job builds only these (scripts/test.sh --sanitize thread).
  if("concurrent" IN_LIST labels)
    if(NOT TARGET zerodet_concurrent_tests)
      add_custom_target(zerodet_concurrent_tests)
    endif()
    add_dependencies(zerodet_concurrent_tests ${name})
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 900 LABELS "${labels}")
endfunction()
