// TFRecord framing, the container of TensorBoard event files. Each record is
//
//   u64 length (little endian) | u32 masked CRC-32C of those 8 bytes | data | u32 masked CRC-32C of data
//
// so a reader can tell a complete record from the torn tail a crash leaves, and a bit flip from either.
#pragma once

#include <cstddef>
#include <cstdint>
#include <istream>
#include <string>
#include <string_view>

namespace prefdiff::run::tfrecord {

inline constexpr std::size_t kHeaderBytes = 12;  // length + its CRC
inline constexpr std::size_t kFooterBytes = 4;   // CRC of the data

// Appends `data` framed as one record to `out`.
void append_framed(std::string& out, std::string_view data);
std::string frame(std::string_view data);

// What a reader found after the last good record.
enum class Tail {
  kClean,      // the bytes end right after a record
  kTruncated,  // an incomplete last record: what a crash in the middle of a write leaves
  kCorrupt,    // a checksum mismatch: the bytes were changed; nothing from here on is trusted
};

// Reads records one by one (event files with images do not have to fit in memory).
class RecordReader {
 public:
  explicit RecordReader(std::istream& in) : in_(in) {}
  // The next record's data; false at the end of the stream or at the first bad record (see tail()).
  bool next(std::string& data);
  std::uint64_t good_bytes() const { return good_bytes_; }  // up to the end of the last good record
  std::uint64_t record_start() const { return record_start_; }  // where the record next() returned starts
  Tail tail() const { return tail_; }
  const std::string& problem() const { return problem_; }  // for kTruncated / kCorrupt, with the offset

 private:
  bool stop(Tail tail, const std::string& what);

  std::istream& in_;
  std::uint64_t good_bytes_ = 0;
  std::uint64_t record_start_ = 0;
  Tail tail_ = Tail::kClean;
  std::string problem_;
};

}  // namespace prefdiff::run::tfrecord
