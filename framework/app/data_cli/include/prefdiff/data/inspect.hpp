// Human-readable summary of one shard (`prefdiff data inspect`): attributes, counts, dataset shapes and
// dtypes, metadata ranges and the first rows.
#ifndef PREFDIFF_DATA_INSPECT_HPP
#define PREFDIFF_DATA_INSPECT_HPP

#include <cstdint>
#include <ostream>
#include <string>

namespace prefdiff::data {

// Throws ShardError when the shard does not open cleanly (validate explains every problem).
void inspect_shard(const std::string& path, uint64_t rows, std::ostream& out);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_INSPECT_HPP
