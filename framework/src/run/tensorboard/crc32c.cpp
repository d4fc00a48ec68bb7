// CRC-32C, reflected polynomial 0x82F63B78, one table lookup per byte (a few ms for a large PNG: nothing
// next to the training step that produced it).
#include "prefdiff/run/tensorboard/crc32c.hpp"

#include <array>

namespace prefdiff::run::tfrecord {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78u;
constexpr std::uint32_t kMaskDelta = 0xa282ead8u;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kPolynomial : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

}  // namespace

std::uint32_t crc32c(std::string_view data, std::uint32_t crc) {
  std::uint32_t c = ~crc;
  for (char ch : data) c = (c >> 8) ^ kTable[(c ^ static_cast<unsigned char>(ch)) & 0xffu];
  return ~c;
}

std::uint32_t mask_crc(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

std::uint32_t unmask_crc(std::uint32_t masked) {
  const std::uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace prefdiff::run::tfrecord
