// HPDv2 JSON (train.json and test.json) -> pair shards.
#include <algorithm>
#include <cmath>

#include "json_input.hpp"
#include "pair_assembler.hpp"
#include "prefdiff/data/importers.hpp"
#include "prefdiff/data/stable_id.hpp"

namespace prefdiff::data {

ImportSummary import_hpdv2(const std::string& input, PairEncoder& encoder, const ImportOptions& options) {
  const nlohmann::json records = load_json_file(input);
  if (!records.is_array()) throw ImportError(input + ": the top level is " + std::string(records.type_name()) + ", expected an array of records");
  // margin: rank gap (test.json) or 1 (train.json, where one chosen image beats each other one).
  PairAssembler out("hpdv2", input, "hpdv2", encoder, options, {"margin", "group_size"}, {"image_w", "image_l"});
  for (size_t r = 0; r < records.size() && !out.full(); ++r) {
    const RecordRef record{input, r, records[r]};
    ++out.summary().records;
    const std::string caption = record.string("prompt");
    const bool train = records[r].is_object() && records[r].contains("human_preference");
    const std::vector<std::string> images = record.strings(train ? "file_path" : "image_path");
    // train: human_preference marks the chosen image(s), higher is preferred; test: rank, lower is better.
    const std::vector<double> scores = record.numbers(train ? "human_preference" : "rank");
    if (images.size() != scores.size())
      record.fail(train ? "human_preference" : "rank",
                  "has " + std::to_string(scores.size()) + " entries for " + std::to_string(images.size()) + " images", "");
    if (images.size() < 2) {
      ++out.summary().skipped;
      continue;
    }
    ++out.summary().prompts;
    for (const RankedPair& p : expand_group(scores, /*lower_is_better=*/!train, out.summary().ties)) {
      const std::string& a = std::min(images[p.winner], images[p.loser]);
      const std::string& b = std::max(images[p.winner], images[p.loser]);
      ImageRef winner{images[p.winner], "", nullptr, 0}, loser{images[p.loser], "", nullptr, 0};
      const double margin = std::fabs(scores[p.winner] - scores[p.loser]);
      if (!out.add(stable_id({"hpdv2", caption, a, b}), caption, winner, loser, {margin, static_cast<double>(images.size())},
                   {images[p.winner], images[p.loser]}))
        break;
    }
    out.end_group();
  }
  if (out.summary().skipped > 0) out.summary().notes.push_back(std::to_string(out.summary().skipped) + " records with fewer than 2 images");
  return out.finish();
}

}  // namespace prefdiff::data
