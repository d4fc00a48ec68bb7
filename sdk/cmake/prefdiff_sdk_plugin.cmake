# prefdiff_add_plugin(<target> SOURCES <files...> [OUTPUT_DIRECTORY <dir>])
#
# Builds a tier-1 prefdiff plugin: a shared library that links only the SDK, with hidden visibility so
# that the entry point `prefdiff_plugin_entry` is its only exported symbol.
function(prefdiff_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "prefdiff_add_plugin(${target}): give the plugin's SOURCES")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE prefdiff::sdk)
  set_target_properties(${target} PROPERTIES
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    PREFIX "lib")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
  # Lets a project build "all its plugins" as one target (prefdiff's own tree uses it).
  set_property(GLOBAL APPEND PROPERTY PREFDIFF_PLUGIN_TARGETS ${target})
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # A plugin must not depend on symbols from the host: unresolved symbols fail the link.
    target_link_options(${target} PRIVATE "-Wl,--no-undefined")
  endif()
endfunction()
