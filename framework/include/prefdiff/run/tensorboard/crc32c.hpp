// CRC-32C (Castagnoli, the iSCSI checksum of RFC 3720) and TensorFlow's masked form, which TFRecord files
// store. Masking keeps a CRC of data that itself holds CRCs from looking like one.
#pragma once

#include <cstdint>
#include <string_view>

namespace prefdiff::run::tfrecord {

// CRC-32C of `data`; pass a previous result as `crc` to continue over more bytes.
std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0);

// ((crc >> 15) | (crc << 17)) + 0xa282ead8, as TensorFlow's crc32c::Mask.
std::uint32_t mask_crc(std::uint32_t crc);
std::uint32_t unmask_crc(std::uint32_t masked);

}  // namespace prefdiff::run::tfrecord
