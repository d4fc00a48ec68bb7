#include "prefdiff/host/version.hpp"

#include "prefdiff/abi.h"

extern const char* prefdiff_source_revision_text;  // generated: source_revision.cpp

namespace prefdiff {

std::string prefdiff_version() { return PREFDIFF_VERSION; }
std::string source_revision() { return prefdiff_source_revision_text; }
std::string abi_version() { return std::to_string(PD_ABI_MAJOR) + "." + std::to_string(PD_ABI_MINOR); }

}  // namespace prefdiff
