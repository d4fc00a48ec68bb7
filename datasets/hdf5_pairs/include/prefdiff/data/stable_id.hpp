// Stable 64-bit ids from strings: the same source record gets the same pair id on every machine and in
// every import, which is what keys label noise and dedup. FNV-1a over length-prefixed parts (so ("ab","c")
// and ("a","bc") differ), finished with splitmix64.
#ifndef PREFDIFF_DATA_STABLE_ID_HPP
#define PREFDIFF_DATA_STABLE_ID_HPP

#include <cstdint>
#include <initializer_list>
#include <string_view>

#include "prefdiff/sdk.hpp"

namespace prefdiff::data {

inline uint64_t stable_id(std::initializer_list<std::string_view> parts) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto byte = [&h](unsigned char c) {
    h ^= c;
    h *= 0x100000001b3ull;
  };
  for (std::string_view part : parts) {
    const uint64_t n = part.size();
    for (int i = 0; i < 8; ++i) byte(static_cast<unsigned char>(n >> (8 * i)));
    for (char c : part) byte(static_cast<unsigned char>(c));
  }
  return prefdiff::sdk::mix64(h);
}

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_STABLE_ID_HPP
