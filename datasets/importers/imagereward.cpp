// ImageReward rankings JSON -> pair shards.
#include <algorithm>

#include "json_input.hpp"
#include "pair_assembler.hpp"
#include "prefdiff/data/importers.hpp"
#include "prefdiff/data/stable_id.hpp"

namespace prefdiff::data {

ImportSummary import_imagereward(const std::string& input, PairEncoder& encoder, const ImportOptions& options) {
  const nlohmann::json records = load_json_file(input);
  if (!records.is_array())
    throw ImportError(input + ": the top level is " + std::string(records.type_name()) +
                      ", expected an array of {id, prompt, generations, ranking} records");
  PairAssembler out("imagereward", input, "imagereward", encoder, options, {"margin", "rank_w", "rank_l", "group_size"},
                    {"group_id", "image_w", "image_l"});
  for (size_t r = 0; r < records.size() && !out.full(); ++r) {
    const RecordRef record{input, r, records[r]};
    ++out.summary().records;
    const std::string caption = record.string("prompt");
    const std::vector<std::string> images = record.strings("generations");
    const std::vector<double> ranking = record.numbers("ranking");
    const nlohmann::json& id_value = record.require("id");
    const std::string group = id_value.is_string() ? id_value.get<std::string>() : id_value.dump();
    if (images.size() != ranking.size())
      record.fail("ranking", "has " + std::to_string(ranking.size()) + " entries but 'generations' has " + std::to_string(images.size()),
                  "every generation needs a rank");
    ++out.summary().prompts;
    for (const RankedPair& p : expand_group(ranking, /*lower_is_better=*/true, out.summary().ties)) {
      // The id hashes the unordered image pair, so it does not depend on which image won.
      const std::string& a = std::min(images[p.winner], images[p.loser]);
      const std::string& b = std::max(images[p.winner], images[p.loser]);
      ImageRef winner{images[p.winner], "", nullptr, 0}, loser{images[p.loser], "", nullptr, 0};
      const double rank_w = ranking[p.winner], rank_l = ranking[p.loser];
      if (!out.add(stable_id({"imagereward", group, a, b}), caption, winner, loser,
                   {rank_l - rank_w, rank_w, rank_l, static_cast<double>(images.size())}, {group, images[p.winner], images[p.loser]}))
        break;
    }
    out.end_group();
  }
  return out.finish();
}

}  // namespace prefdiff::data
