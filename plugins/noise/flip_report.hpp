// Shared by the noise injectors: counts the flips of one decide() call and reports the realised
// fraction through the host's metric service, so a run log shows the noise it actually trained on.
#ifndef PREFDIFF_NOISE_FLIP_REPORT_HPP
#define PREFDIFF_NOISE_FLIP_REPORT_HPP

#include <cstddef>
#include <cstdint>

#include "prefdiff/sdk.hpp"

namespace prefdiff::noise {

inline void report_flip_fraction(const prefdiff::sdk::Host& host, const uint8_t* flip, size_t count) {
  if (count == 0) return;
  size_t flips = 0;
  for (size_t i = 0; i < count; ++i) flips += flip[i] != 0 ? 1u : 0u;
  host.metric("flip_fraction", static_cast<double>(flips) / static_cast<double>(count));
}

// Hash streams: distinct per injector so that two injectors with the same seed do not pick the same pairs.
constexpr uint64_t kStreamLabelFlip = 0x6c6162656c666c70ull;     // "labelflp"
constexpr uint64_t kStreamAmbiguityFlip = 0x616d626967666c70ull; // "ambigflp"
constexpr uint64_t kStreamAnnotatorPick = 0x616e6e6f7470636bull; // "annotpck"
constexpr uint64_t kStreamAnnotatorFlip = 0x616e6e6f74666c70ull; // "annotflp"

}  // namespace prefdiff::noise

#endif  // PREFDIFF_NOISE_FLIP_REPORT_HPP
