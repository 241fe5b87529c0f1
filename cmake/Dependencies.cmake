# Third-party dependencies. Every one comes from the system (Debian packages) except ONNX
# Runtime, which Debian 12 lacks: scripts/fetch_onnxruntime.sh unpacks the official build into
# .deps/onnxruntime, used when no installed onnxruntime CMake package is found.

find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
# OpenCV: only core, imgproc (resize, drawing) and imgcodecs (PNG/BMP, JPEG writing). Debian
# ships OpenCVConfig.cmake only in the all-modules libopencv-dev (150 packages, Qt, VTK, MPI);
# the per-module -dev packages are enough when we locate headers and libraries ourselves.
find_package(OpenCV 4 QUIET CONFIG COMPONENTS core imgproc imgcodecs)
add_library(zerodet_opencv INTERFACE)
if(OpenCV_FOUND)
  target_link_libraries(zerodet_opencv INTERFACE opencv_core opencv_imgproc opencv_imgcodecs)
else()
  find_path(OPENCV_INCLUDE_DIR opencv2/core.hpp PATH_SUFFIXES opencv4 REQUIRED)
  foreach(part core imgproc imgcodecs)
    find_library(OPENCV_${part}_LIBRARY opencv_${part} REQUIRED)
    target_link_libraries(zerodet_opencv INTERFACE "${OPENCV_${part}_LIBRARY}")
  endforeach()
  target_include_directories(zerodet_opencv SYSTEM INTERFACE "${OPENCV_INCLUDE_DIR}")
endif()
find_package(PNG REQUIRED)
find_package(JPEG REQUIRED)
pkg_check_modules(TURBOJPEG REQUIRED IMPORTED_TARGET libturbojpeg)

find_package(onnxruntime CONFIG QUIET)
if(NOT TARGET onnxruntime::onnxruntime)
  set(ZERODET_ORT_ROOT "${CMAKE_SOURCE_DIR}/.deps/onnxruntime" CACHE PATH
      "ONNX Runtime prefix (include/, lib/) when no CMake package is installed")
  find_path(ORT_INCLUDE_DIR onnxruntime_cxx_api.h
            PATHS "${ZERODET_ORT_ROOT}/include" NO_DEFAULT_PATH)
  find_library(ORT_LIBRARY NAMES onnxruntime
               PATHS "${ZERODET_ORT_ROOT}/lib" NO_DEFAULT_PATH)
  if(NOT ORT_INCLUDE_DIR OR NOT ORT_LIBRARY)
    message(FATAL_ERROR "ONNX Runtime not found: install libonnxruntime-dev, or run "
                        "scripts/fetch_onnxruntime.sh, or set ZERODET_ORT_ROOT")
  endif()
  add_library(onnxruntime::onnxruntime SHARED IMPORTED)
  set_target_properties(onnxruntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${ORT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${ORT_INCLUDE_DIR}")
  get_filename_component(ZERODET_ORT_LIBDIR "${ORT_LIBRARY}" DIRECTORY)
  # The binaries find the local ONNX Runtime without LD_LIBRARY_PATH.
  set(CMAKE_BUILD_RPATH "${ZERODET_ORT_LIBDIR}")
  set(CMAKE_INSTALL_RPATH "${ZERODET_ORT_LIBDIR}")
  message(STATUS "ONNX Runtime: ${ORT_LIBRARY}")
endif()

if(ZERODET_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
  include(cmake/ZerodetTest.cmake)
endif()
if(ZERODET_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
