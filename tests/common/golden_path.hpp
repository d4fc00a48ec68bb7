#pragma once
// Where the golden reference set lives, for tests with or without LibTorch (golden.hpp adds the tensor
// comparisons on top).

#include <cstdlib>
#include <filesystem>

namespace prefdiff::testing {

// $PREFDIFF_GOLDEN_DIR, else <repo>/../shared/golden (PREFDIFF_SOURCE_DIR is the repo root).
inline std::filesystem::path golden_dir() {
  if (const char* env = std::getenv("PREFDIFF_GOLDEN_DIR"); env && *env) return env;
  return std::filesystem::path(PREFDIFF_SOURCE_DIR) / ".." / "shared" / "golden";
}

}  // namespace prefdiff::testing
