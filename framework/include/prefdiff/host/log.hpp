// Logging for every part of prefdiff. Implemented over spdlog inside prefdiff_core; code that sees
// LibTorch's headers must use these functions rather than spdlog directly, because LibTorch ships its
// own (newer) fmt headers that shadow the fmt Debian's spdlog is built against.
#pragma once

#include <string>

namespace prefdiff::log {

// "trace", "debug", "info", "warn", "error" or "off"; unknown names mean "info".
void set_level(const std::string& level);
void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace prefdiff::log
