# Golden reference sets: tests/golden/generate.py writes them into the build tree (docs/golden.md), as ctest
# fixtures that run before any golden test (a no-op while the stamp, a hash of the generator,
# requirements.lock and tests/fixtures/public, is current). Every golden test is registered once per set:
# `main` under its own name, `second` (batch 3, 16x24 latents, other seeds and step counts) with the suffix
# ".second". PREFDIFF_GOLDEN_DIR=<dir> ctest -L golden runs them against any other set with the same layout.
#
#   prefdiff_golden_tests(<gtest target> [TEST_FILTER <gtest filter>] [LABELS <extra labels>...]
#                         [PROPERTIES <more test properties>...])   (also defines PREFDIFF_GOLDEN_BUILD_DIR for it)
#   prefdiff_golden_target(<target>)   only the compile definition, for a target registered otherwise
#   prefdiff_golden_command_test(<name> COMMAND <command with @GOLDEN_DIR@> [LABELS ...] [PROPERTIES ...])

set(PREFDIFF_GOLDEN_BUILD_DIR "${CMAKE_BINARY_DIR}/golden" CACHE INTERNAL "Where the generated golden sets live")
set(PREFDIFF_GOLDEN_SETS main second)

set(_golden_generator "${CMAKE_CURRENT_LIST_DIR}/generate.py")
foreach(_set ${PREFDIFF_GOLDEN_SETS})
  if(EXISTS "${PREFDIFF_PYTHON}")
    set(_generate ${PREFDIFF_PYTHON} ${_golden_generator} --set ${_set} --out ${PREFDIFF_GOLDEN_BUILD_DIR}/${_set})
  else()  # fail loudly: without the references every golden test would fail with a missing file instead
    set(_generate sh -c "echo 'no Python for tests/golden/generate.py. HINT: configure with -DPREFDIFF_PYTHON=<the venv of requirements.lock>/bin/python (./quickstart.sh does)' >&2; exit 1")
  endif()
  add_test(NAME golden_generate_${_set} COMMAND ${_generate})
  # One torch thread each: under ctest -j2 both sets are generated at once.
  set_tests_properties(golden_generate_${_set} PROPERTIES FIXTURES_SETUP golden_${_set} LABELS "golden"
                       TIMEOUT 1800 ENVIRONMENT "PREFDIFF_GOLDEN_THREADS=1")
endforeach()
# The same by hand (e.g. before running a golden test binary directly): cmake --build build --target golden
add_custom_target(golden
  COMMAND ${PREFDIFF_PYTHON} ${_golden_generator} --set main --out ${PREFDIFF_GOLDEN_BUILD_DIR}/main
  COMMAND ${PREFDIFF_PYTHON} ${_golden_generator} --set second --out ${PREFDIFF_GOLDEN_BUILD_DIR}/second
  USES_TERMINAL COMMENT "Generating the golden reference sets (tests/golden/generate.py)")

# Where golden_dir() (tests/common/golden_path.hpp) finds the generated sets. Only on the targets that need it:
# an absolute build path in the compile command keeps ccache from sharing those objects between clones.
function(prefdiff_golden_target target)
  target_compile_definitions(${target} PRIVATE PREFDIFF_GOLDEN_BUILD_DIR="${PREFDIFF_GOLDEN_BUILD_DIR}")
endfunction()

function(prefdiff_golden_tests target)
  cmake_parse_arguments(G "" "TEST_FILTER" "LABELS;PROPERTIES" ${ARGN})
  prefdiff_golden_target(${target})
  set(_filter)
  if(G_TEST_FILTER)
    set(_filter TEST_FILTER "${G_TEST_FILTER}")
  endif()
  set(_labels golden ${G_LABELS})
  foreach(_set ${PREFDIFF_GOLDEN_SETS})
    set(_suffix "")
    if(NOT _set STREQUAL "main")
      set(_suffix ".${_set}")
    endif()
    gtest_discover_tests(${target} TEST_SUFFIX "${_suffix}" ${_filter} DISCOVERY_TIMEOUT 60
      PROPERTIES LABELS "${_labels}" ENVIRONMENT "PREFDIFF_GOLDEN_SET=${_set}"
                 FIXTURES_REQUIRED golden_${_set} ${G_PROPERTIES})
  endforeach()
endfunction()

# A non-gtest golden test (e.g. a Python script): registered once per set, @GOLDEN_DIR@ replaced by the set's
# folder (PREFDIFF_GOLDEN_DIR, when set, overrides it inside the script as in the C++ tests).
function(prefdiff_golden_command_test name)
  cmake_parse_arguments(G "" "" "COMMAND;LABELS;PROPERTIES" ${ARGN})
  set(_labels golden ${G_LABELS})
  foreach(_set ${PREFDIFF_GOLDEN_SETS})
    set(_name ${name})
    if(NOT _set STREQUAL "main")
      set(_name ${name}.${_set})
    endif()
    string(REPLACE "@GOLDEN_DIR@" "${PREFDIFF_GOLDEN_BUILD_DIR}/${_set}" _command "${G_COMMAND}")
    string(REPLACE "@SET@" "${_set}" _command "${_command}")
    add_test(NAME ${_name} COMMAND ${_command})
    set_tests_properties(${_name} PROPERTIES LABELS "${_labels}" FIXTURES_REQUIRED golden_${_set}
                         ENVIRONMENT "PREFDIFF_GOLDEN_SET=${_set}" ${G_PROPERTIES})
  endforeach()
endfunction()
