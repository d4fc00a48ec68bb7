#include "prefdiff/data/flip_table.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace prefdiff::data {

FlipTable::FlipTable(std::vector<uint8_t> mask) : mask_(std::move(mask)) {
  for (uint8_t m : mask_) flipped_ += m != 0 ? 1u : 0u;
}

FlipTable FlipTable::decide(instance::DataSource& source, instance::NoiseInstance& noise) {
  const uint64_t n = source.pair_count();
  instance::NoiseBatch batch;
  std::vector<std::string> names;
  for (const auto& t : source.tensors())
    if ((t.flags & PD_TENSOR_METADATA) != 0) names.push_back(t.name);

  // Pair ids and metadata columns of every pair, read in blocks.
  batch.pair_ids.resize(n);
  batch.metadata.assign(names.size(), std::vector<double>(n));
  constexpr uint64_t kBlock = 65536;
  std::vector<uint64_t> indices;
  for (uint64_t first = 0; first < n; first += kBlock) {
    const uint64_t count = std::min(kBlock, n - first);
    indices.resize(count);
    for (uint64_t i = 0; i < count; ++i) indices[i] = first + i;
    std::vector<instance::DataSource::Output> outputs{{"pair_id", batch.pair_ids.data() + first, count * sizeof(uint64_t)}};
    for (size_t c = 0; c < names.size(); ++c)
      outputs.push_back({names[c], batch.metadata[c].data() + first, count * sizeof(double)});
    source.read(indices.data(), count, nullptr, outputs);
  }
  // Injectors see metadata under the column name without the "meta/" prefix.
  for (const std::string& name : names) batch.metadata_names.push_back(name.substr(5));
  batch.dataset_size = n;
  return FlipTable(noise.decide(batch, source.label()));
}

}  // namespace prefdiff::data
