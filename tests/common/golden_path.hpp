#pragma once
// Where the golden reference set lives, for tests with or without LibTorch (golden.hpp adds the tensor
// comparisons on top). The sets are written by tests/golden/generate.py (docs/golden.md).

#include <cstdlib>
#include <filesystem>
#include <string>

#ifndef PREFDIFF_GOLDEN_BUILD_DIR
#error "PREFDIFF_GOLDEN_BUILD_DIR is not defined: register the test with prefdiff_golden_tests() or call prefdiff_golden_target() (tests/golden/golden.cmake)"
#endif

namespace prefdiff::testing {

// $PREFDIFF_GOLDEN_DIR when set (any reference set with the documented layout), else the set this build
// generated: <build>/golden/<set>, <set> = $PREFDIFF_GOLDEN_SET (ctest registers every golden test once per
// generated set and sets it) or "main". PREFDIFF_GOLDEN_BUILD_DIR comes from prefdiff_golden_tests() /
// prefdiff_golden_target() (tests/golden/golden.cmake).
inline std::filesystem::path golden_dir() {
  if (const char* env = std::getenv("PREFDIFF_GOLDEN_DIR"); env && *env) return env;
  const char* set = std::getenv("PREFDIFF_GOLDEN_SET");
  return std::filesystem::path(PREFDIFF_GOLDEN_BUILD_DIR) / (set && *set ? set : "main");
}

// What to do when a golden file is missing (for failure messages).
inline std::string golden_hint() {
  return "HINT: ctest generates the reference sets before the golden tests (fixtures golden_generate_main / "
         "golden_generate_second), or run `cmake --build <build> --target golden`; set PREFDIFF_GOLDEN_DIR to "
         "test against another set with the same layout (docs/golden.md)";
}

}  // namespace prefdiff::testing
