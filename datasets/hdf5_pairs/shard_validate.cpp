#include "prefdiff/data/shard_validate.hpp"

#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "prefdiff/data/half.hpp"
#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/data/shard_set.hpp"

namespace prefdiff::data {

bool ValidationReport::ok() const { return problem_count() == 0; }

size_t ValidationReport::problem_count() const {
  size_t n = problems.size();
  for (const ShardReport& s : shards) n += s.problems.size();
  return n;
}

namespace {

constexpr uint64_t kBlockRows = 64;

// Counts non-finite (and, for stds, negative) values of a row tensor, block by block.
void check_values(ShardFile& shard, ShardTensor tensor, const char* name, uint64_t rows, pd_dtype dtype, bool non_negative,
                  std::vector<std::string>& problems) {
  const size_t row_bytes = shard.row_bytes(tensor);
  const size_t per_row = row_bytes / (dtype == PD_DTYPE_F16 ? 2 : 4);
  std::vector<uint8_t> buffer(row_bytes * kBlockRows);
  uint64_t bad_rows = 0, first_bad = 0, negative_rows = 0, first_negative = 0;
  for (uint64_t first = 0; first < rows; first += kBlockRows) {
    const uint64_t n = std::min(kBlockRows, rows - first);
    shard.read_rows(tensor, first, n, buffer.data());
    for (uint64_t r = 0; r < n; ++r) {
      bool finite = true, negative = false;
      for (size_t k = 0; k < per_row; ++k) {
        float v;
        if (dtype == PD_DTYPE_F16) {
          uint16_t h;
          std::memcpy(&h, buffer.data() + r * row_bytes + 2 * k, 2);
          v = half_to_float(h);
        } else {
          std::memcpy(&v, buffer.data() + r * row_bytes + 4 * k, 4);
        }
        finite = finite && std::isfinite(v);
        negative = negative || v < 0.0f;
      }
      if (!finite && bad_rows++ == 0) first_bad = first + r;
      if (non_negative && negative && negative_rows++ == 0) first_negative = first + r;
    }
  }
  const std::string& file = shard.info().path;
  if (bad_rows > 0)
    problems.push_back(shard_problem(file, name, std::to_string(bad_rows) + " rows hold NaN or Inf (first: row " +
                                                     std::to_string(first_bad) + "). HINT: re-encode them; fp16 overflow is a common cause"));
  if (negative_rows > 0)
    problems.push_back(shard_problem(file, name, std::to_string(negative_rows) + " rows hold negative standard deviations (first: row " +
                                                     std::to_string(first_negative) + ")"));
}

}  // namespace

ShardReport validate_shard(const std::string& path) {
  ShardReport report;
  report.path = path;
  std::unique_ptr<ShardFile> shard = ShardFile::open(path, report.problems);
  if (!shard) return report;
  const ShardInfo& info = shard->info();
  report.pairs = info.pair_count;
  report.prompts = info.prompt_count;
  try {
    const pd_dtype latent = info.layout.latent_dtype;
    check_values(*shard, ShardTensor::kLatentW, "/pairs/latent_w", info.pair_count, latent, false, report.problems);
    check_values(*shard, ShardTensor::kLatentL, "/pairs/latent_l", info.pair_count, latent, false, report.problems);
    if (info.layout.latent_std) {
      check_values(*shard, ShardTensor::kLatentWStd, "/pairs/latent_w_std", info.pair_count, latent, true, report.problems);
      check_values(*shard, ShardTensor::kLatentLStd, "/pairs/latent_l_std", info.pair_count, latent, true, report.problems);
    }
    if (info.layout.time_ids)
      check_values(*shard, ShardTensor::kTimeIds, "/pairs/time_ids", info.pair_count, PD_DTYPE_F32, false, report.problems);
    check_values(*shard, ShardTensor::kEmbeds, "/prompts/embeds", static_cast<uint64_t>(info.prompt_count), PD_DTYPE_F16, false,
                 report.problems);
    if (info.layout.pooled_dim > 0)
      check_values(*shard, ShardTensor::kPooled, "/prompts/pooled", static_cast<uint64_t>(info.prompt_count), PD_DTYPE_F16, false,
                   report.problems);
    for (size_t c = 0; c < info.layout.meta_columns.size(); ++c) {
      const std::vector<double>& values = shard->meta()[c];
      for (uint64_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i])) {
          report.problems.push_back(shard_problem(path, std::string(path::kMetaGroup) + "/" + info.layout.meta_columns[c],
                                                  "row " + std::to_string(i) + " is not finite"));
          break;
        }
    }
    const std::vector<std::string> captions = shard->read_strings(path::kText, 0, static_cast<uint64_t>(info.prompt_count));
    if (!captions[static_cast<size_t>(info.empty_prompt)].empty())
      report.problems.push_back(shard_problem(path, "/prompts attribute 'empty'", "points at row " + std::to_string(info.empty_prompt) +
                                                                                     " whose caption is \"" +
                                                                                     captions[static_cast<size_t>(info.empty_prompt)] +
                                                                                     "\", not the empty prompt"));
    for (const std::string& column : info.layout.text_columns)
      shard->read_strings(std::string(path::kTextGroup) + "/" + column, 0, info.pair_count);
  } catch (const std::exception& e) {
    report.problems.push_back(e.what());
  }
  return report;
}

ValidationReport validate_shards(const std::vector<std::string>& patterns) {
  ValidationReport report;
  std::vector<std::string> files;
  for (const std::string& pattern : patterns) {
    try {
      for (const std::string& f : expand_shard_patterns({pattern})) files.push_back(f);
    } catch (const std::exception& e) {
      report.problems.push_back(e.what());
    }
  }
  if (patterns.empty()) report.problems.push_back("no shard files given");
  bool all_ok = true;
  for (const std::string& f : files) {
    report.shards.push_back(validate_shard(f));
    all_ok = all_ok && report.shards.back().problems.empty();
  }
  // Set-level agreement (attributes, layout, unique pair ids) is ShardSet's check; reuse it verbatim.
  if (all_ok && files.size() > 1) {
    try {
      ShardSet set(files);
    } catch (const std::exception& e) {
      report.problems.push_back(e.what());
    }
  }
  return report;
}

}  // namespace prefdiff::data
