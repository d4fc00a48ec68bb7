#include "prefdiff/data/flip_table.hpp"

#include <stdexcept>
#include <string>

namespace prefdiff::data {

FlipTable::FlipTable(std::vector<uint8_t> mask) : mask_(std::move(mask)) {
  for (uint8_t m : mask_) flipped_ += m != 0 ? 1u : 0u;
}

FlipTable FlipTable::decide(SourceHandle& source, const pd_noise_functions* functions, pd_instance* instance) {
  if (functions == nullptr || functions->decide == nullptr || instance == nullptr)
    throw std::invalid_argument("noise injector: null function table or instance");
  const uint64_t n = source.pair_count();
  std::vector<std::string> names;
  for (const auto& t : source.tensors())
    if ((t.flags & PD_TENSOR_METADATA) != 0) names.push_back(t.name);

  // Pair ids and metadata columns of every pair, read in blocks.
  std::vector<uint64_t> ids(n);
  std::vector<std::vector<double>> columns(names.size(), std::vector<double>(n));
  constexpr uint64_t kBlock = 65536;
  std::vector<uint64_t> indices;
  for (uint64_t first = 0; first < n; first += kBlock) {
    const uint64_t count = std::min(kBlock, n - first);
    indices.resize(count);
    for (uint64_t i = 0; i < count; ++i) indices[i] = first + i;
    std::vector<SourceHandle::Output> outputs{{"pair_id", ids.data() + first, count * sizeof(uint64_t)}};
    for (size_t c = 0; c < names.size(); ++c) outputs.push_back({names[c], columns[c].data() + first, count * sizeof(double)});
    source.read(indices.data(), count, nullptr, outputs);
  }

  // Injectors see metadata under the column name without the "meta/" prefix.
  std::vector<std::string> short_names;
  std::vector<const char*> name_pointers;
  std::vector<const double*> column_pointers;
  for (const std::string& name : names) short_names.push_back(name.substr(5));
  for (size_t c = 0; c < names.size(); ++c) {
    name_pointers.push_back(short_names[c].c_str());
    column_pointers.push_back(columns[c].data());
  }
  pd_noise_inputs inputs{};
  inputs.struct_size = sizeof(pd_noise_inputs);
  inputs.metadata_count = static_cast<uint32_t>(names.size());
  inputs.count = n;
  inputs.pair_ids = ids.data();
  inputs.metadata_names = name_pointers.data();
  inputs.metadata = column_pointers.data();
  inputs.dataset_size = n;
  std::vector<uint8_t> mask(n, 0);
  pd_noise_outputs outputs{};
  outputs.struct_size = sizeof(pd_noise_outputs);
  outputs.flip = mask.data();
  prefdiff::sdk::ErrorBuffer error;
  const pd_status status = functions->decide(instance, &inputs, &outputs, error.get());
  if (status != PD_OK)
    throw std::runtime_error("noise injector on dataset " + source.label() + ": " + error.message() + " [" +
                             prefdiff::sdk::status_name(status) + "]");
  return FlipTable(std::move(mask));
}

}  // namespace prefdiff::data
