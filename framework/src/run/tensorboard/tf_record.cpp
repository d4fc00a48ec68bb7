// TFRecord framing: writing a record, reading records back (resume pruning, tests).
#include "prefdiff/run/tensorboard/tf_record.hpp"

#include <algorithm>

#include "prefdiff/run/tensorboard/crc32c.hpp"

namespace prefdiff::run::tfrecord {
namespace {

void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}

std::uint64_t get_le(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// Reads up to n bytes; returns how many came.
std::size_t read_some(std::istream& in, char* p, std::size_t n) {
  in.read(p, static_cast<std::streamsize>(n));
  return static_cast<std::size_t>(in.gcount());
}

}  // namespace

void append_framed(std::string& out, std::string_view data) {
  const std::size_t start = out.size();
  put_le(out, data.size(), 8);
  put_le(out, mask_crc(crc32c(std::string_view(out).substr(start, 8))), 4);
  out.append(data.data(), data.size());
  put_le(out, mask_crc(crc32c(data)), 4);
}

std::string frame(std::string_view data) {
  std::string out;
  out.reserve(kHeaderBytes + data.size() + kFooterBytes);
  append_framed(out, data);
  return out;
}

bool RecordReader::stop(Tail tail, const std::string& what) {
  tail_ = tail;
  problem_ = what + " at byte " + std::to_string(good_bytes_);
  return false;
}

bool RecordReader::next(std::string& data) {
  if (tail_ != Tail::kClean) return false;
  char header[kHeaderBytes];
  const std::size_t got = read_some(in_, header, kHeaderBytes);
  if (got == 0) return false;  // the end, right after a record
  if (got < kHeaderBytes) return stop(Tail::kTruncated, "an incomplete record header");
  if (mask_crc(crc32c(std::string_view(header, 8))) != static_cast<std::uint32_t>(get_le(header + 8, 4)))
    return stop(Tail::kCorrupt, "a record length whose checksum does not match");
  const std::uint64_t length = get_le(header, 8);
  // Read in slices so that a huge length from a damaged file fails as a short read, not as an allocation.
  data.clear();
  constexpr std::size_t kSlice = std::size_t{1} << 20;
  while (data.size() < length) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kSlice, length - data.size()));
    const std::size_t old = data.size();
    data.resize(old + want);
    const std::size_t n = read_some(in_, data.data() + old, want);
    data.resize(old + n);
    if (n < want) return stop(Tail::kTruncated, "a record of " + std::to_string(length) + " bytes cut short");
  }
  char footer[kFooterBytes];
  if (read_some(in_, footer, kFooterBytes) < kFooterBytes)
    return stop(Tail::kTruncated, "a record without its data checksum");
  if (mask_crc(crc32c(data)) != static_cast<std::uint32_t>(get_le(footer, 4)))
    return stop(Tail::kCorrupt, "a record whose data checksum does not match");
  record_start_ = good_bytes_;
  good_bytes_ += kHeaderBytes + length + kFooterBytes;
  return true;
}

}  // namespace prefdiff::run::tfrecord
