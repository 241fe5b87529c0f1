# Writes OUTPUT, a C++ source defining `extern const std::string_view NAME` (in namespace
# NAMESPACE) whose value is the text of INPUT: files served by the binary (the web console)
# without installing them beside it. Run as `cmake -DINPUT=.. -DOUTPUT=.. -DNAME=..
# -DNAMESPACE=.. -P EmbedText.cmake` from a custom command, so edits to INPUT rebuild it.
file(READ "${INPUT}" text)
set(delimiter "zd_embed")
string(FIND "${text}" ")${delimiter}\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )${delimiter}\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/EmbedText.cmake; do not edit.\n"
  "#include <string_view>\n\n"
  "namespace ${NAMESPACE} {\n"
  "extern const std::string_view ${NAME};\n"
  "const std::string_view ${NAME} = R\"${delimiter}(${text})${delimiter}\";\n"
  "}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
