# zerodet_add_test(NAME SOURCES a.cc b.cc LIBS zerodet_x ...)
# Builds one GoogleTest executable and registers each test case with CTest. Tests find the shared
# data (models, images, COCO subset) and the source tree through compile definitions.
function(zerodet_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    ZERODET_SHARED_DIR="${ZERODET_SHARED_DIR}"
    ZERODET_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    ZERODET_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 900)
endfunction()
