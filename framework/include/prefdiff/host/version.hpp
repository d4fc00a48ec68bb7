// Build and runtime identity printed by `prefdiff version` and kept in every run folder.
#pragma once

#include <string>

namespace prefdiff {

std::string prefdiff_version();
std::string source_revision();  // git describe of the source tree at configure time, or "unknown"
std::string abi_version();      // "major.minor" of the tier-1 plugin ABI

}  // namespace prefdiff
