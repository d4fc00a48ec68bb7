// Importers: the real ImageReward test file (466 prompts, 6,399 strict pairs, 831 ties, counted here
// independently from the JSON), HPDv2 and Pick-a-Pic fixtures, parquet through pyarrow, and the `data`
// commands end to end through prefdiff-data-tool.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "prefdiff/data/importers.hpp"
#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/data/shard_validate.hpp"
#include "shard_fixture.hpp"

using namespace prefdiff::data;
using prefdiff::test::TempDir;

namespace {

// The real ImageReward test rankings, in the repository with their provenance (tests/fixtures/public/README.md).
const std::string kImageReward = std::string(PREFDIFF_TEST_PUBLIC_DATA) + "/imagereward_test.json";

struct Shell {
  int status;
  std::string output;
};

// Runs a command, capturing stdout and stderr together.
Shell run(const std::string& command) {
  Shell result{0, ""};
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  char buffer[4096];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) result.output += buffer;
  const int status = pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

ImportOptions options_for(const std::string& output) {
  ImportOptions o;
  o.output = output;
  o.split = "test";
  return o;
}

}  // namespace

TEST(ImageRewardImport, RealFileCountsMatchAnIndependentCount) {
  ASSERT_TRUE(std::filesystem::exists(kImageReward)) << kImageReward << " is missing from the clone (git status?)";
  // Independent reference: count straight from the JSON.
  std::ifstream in(kImageReward);
  const nlohmann::json records = nlohmann::json::parse(in);
  size_t strict = 0, ties = 0;
  std::set<std::string> captions;
  std::map<std::pair<std::string, std::string>, int> rank_of;  // (group id, image) -> rank
  std::map<std::string, std::string> caption_of;
  for (const auto& r : records) {
    const auto& rank = r["ranking"];
    for (size_t i = 0; i < rank.size(); ++i) {
      rank_of[{r["id"].get<std::string>(), r["generations"][i].get<std::string>()}] = rank[i].get<int>();
      for (size_t j = i + 1; j < rank.size(); ++j) (rank[i] == rank[j] ? ties : strict)++;
    }
    captions.insert(r["prompt"].get<std::string>());
    caption_of[r["id"].get<std::string>()] = r["prompt"].get<std::string>();
  }
  ASSERT_EQ(records.size(), 466u);  // the numbers tests/fixtures/public/README.md gives for this file
  ASSERT_EQ(strict, 6399u);
  ASSERT_EQ(ties, 831u);

  TempDir dir;
  PlaceholderEncoder encoder(PlaceholderEncoder::tiny());
  const ImportSummary s = import_imagereward(kImageReward, encoder, options_for(dir.file("ir.h5")));
  EXPECT_EQ(s.records, records.size());
  EXPECT_EQ(s.prompts, records.size());
  EXPECT_EQ(s.strict_pairs, strict);
  EXPECT_EQ(s.ties, ties);
  EXPECT_EQ(s.duplicates, 0u);
  EXPECT_EQ(s.distinct_prompts, captions.size());
  const std::string text = s.to_string();
  EXPECT_NE(text.find("prompts:             466"), std::string::npos) << text;
  EXPECT_NE(text.find("strict pairs:        6399"), std::string::npos) << text;
  EXPECT_NE(text.find("ties dropped:        831"), std::string::npos) << text;

  auto shard = ShardFile::open(dir.file("ir.h5"));
  const ShardInfo& info = shard->info();
  EXPECT_EQ(info.pair_count, strict);
  EXPECT_EQ(info.prompt_count, static_cast<int64_t>(captions.size()) + 1);  // deduplicated, plus the empty prompt
  EXPECT_EQ(info.attributes.encoder, "placeholder-hash-v1");
  EXPECT_EQ(info.attributes.source_dataset, "imagereward");
  const std::vector<std::string>& meta = info.layout.meta_columns;
  const size_t margin = std::find(meta.begin(), meta.end(), "margin") - meta.begin();
  const size_t rank_w = std::find(meta.begin(), meta.end(), "rank_w") - meta.begin();
  ASSERT_LT(rank_w, meta.size());
  const auto groups = shard->read_strings("/pairs/text/group_id", 0, info.pair_count);
  const auto image_w = shard->read_strings("/pairs/text/image_w", 0, info.pair_count);
  const auto image_l = shard->read_strings("/pairs/text/image_l", 0, info.pair_count);
  const auto prompt_text = shard->read_strings("/prompts/text", 0, static_cast<uint64_t>(info.prompt_count));
  std::set<uint64_t> ids(shard->pair_ids().begin(), shard->pair_ids().end());
  EXPECT_EQ(ids.size(), strict);
  for (uint64_t i = 0; i < info.pair_count; ++i) {
    // Winner first per the source ranks, and the metadata says so.
    const int rw = rank_of.at({groups[i], image_w[i]}), rl = rank_of.at({groups[i], image_l[i]});
    ASSERT_LT(rw, rl) << "pair " << i;
    ASSERT_EQ(shard->meta()[rank_w][i], rw);
    ASSERT_EQ(shard->meta()[margin][i], rl - rw);
    ASSERT_EQ(prompt_text[static_cast<size_t>(shard->prompts()[i])], caption_of.at(groups[i]));
  }
  // Pair ids are stable: a second import gives the same ids in the same order.
  import_imagereward(kImageReward, encoder, options_for(dir.file("again.h5")));
  EXPECT_EQ(ShardFile::open(dir.file("again.h5"))->pair_ids(), shard->pair_ids());
  EXPECT_TRUE(validate_shards({dir.file("ir.h5")}).ok());
}

TEST(ImageRewardImport, MalformedRecordNamesFileRecordAndKey) {
  TempDir dir;
  write_text(dir.file("bad.json"), R"([{"id": "a", "prompt": "x", "generations": ["1", "2"], "ranking": [1, 2]},
                                      {"id": "b", "prompt": "y", "generations": ["1", "2", "3"], "ranking": [1, 2]}])");
  PlaceholderEncoder encoder(PlaceholderEncoder::tiny());
  try {
    import_imagereward(dir.file("bad.json"), encoder, options_for(dir.file("o.h5")));
    ADD_FAILURE() << "accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("bad.json") + ", record 1 (id \"b\"): key 'ranking' has 2 entries but 'generations' has 3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("o.h5")));
}

TEST(Hpdv2Import, TrainAndTestRecords) {
  TempDir dir;
  // train: one chosen image beats each other one; the two unchosen ones are a tie.
  // test: lower rank is better; equal ranks are ties.
  write_text(dir.file("hpd.json"), R"([
    {"human_preference": [1, 0], "prompt": "a red car", "file_path": ["c1.jpg", "c2.jpg"]},
    {"human_preference": [0, 1, 0], "prompt": "a red car", "file_path": ["d1.jpg", "d2.jpg", "d3.jpg"]},
    {"prompt": "a blue bird", "image_path": ["b1.jpg", "b2.jpg", "b3.jpg", "b4.jpg"], "rank": [2, 1, 2, 4],
     "raw_annotations": []}])");
  PlaceholderEncoder encoder(PlaceholderEncoder::tiny());
  const ImportSummary s = import_hpdv2(dir.file("hpd.json"), encoder, options_for(dir.file("h.h5")));
  EXPECT_EQ(s.prompts, 3u);
  EXPECT_EQ(s.strict_pairs, 1u + 2u + 5u);
  EXPECT_EQ(s.ties, 1u + 1u);
  EXPECT_EQ(s.distinct_prompts, 2u);
  auto shard = ShardFile::open(dir.file("h.h5"));
  const auto w = shard->read_strings("/pairs/text/image_w", 0, 8), l = shard->read_strings("/pairs/text/image_l", 0, 8);
  const std::set<std::pair<std::string, std::string>> pairs{{w[0], l[0]}, {w[1], l[1]}, {w[2], l[2]}, {w[3], l[3]},
                                                            {w[4], l[4]}, {w[5], l[5]}, {w[6], l[6]}, {w[7], l[7]}};
  const std::set<std::pair<std::string, std::string>> expected{{"c1.jpg", "c2.jpg"}, {"d2.jpg", "d1.jpg"}, {"d2.jpg", "d3.jpg"},
                                                               {"b2.jpg", "b1.jpg"}, {"b1.jpg", "b4.jpg"}, {"b2.jpg", "b3.jpg"},
                                                               {"b2.jpg", "b4.jpg"}, {"b3.jpg", "b4.jpg"}};
  EXPECT_EQ(pairs, expected);
}

namespace {
// Pick-a-Pic rows: a win for image 0, a win for image 1, a tie, an unlabelled row, identical images, and
// a repeat of the first ranking (a duplicate pair id).
const char* kPickRows[] = {
    R"({"caption": "a fox", "label_0": 1.0, "label_1": 0.0, "has_label": true, "are_different": true, "image_0_uid": "u1", "image_1_uid": "u2", "model_0": "sdxl", "model_1": "sd15", "ranking_id": 10, "user_id": 7, "created_at": 1683000000.0})",
    R"({"caption": "a fox", "label_0": 0.0, "label_1": 1.0, "has_label": true, "are_different": true, "image_0_uid": "u3", "image_1_uid": "u4", "model_0": "sdxl", "model_1": "sd21", "ranking_id": 11, "user_id": 8, "created_at": 1683000001.0})",
    R"({"caption": "a cat", "label_0": 0.5, "label_1": 0.5, "has_label": true, "are_different": true, "image_0_uid": "u5", "image_1_uid": "u6", "model_0": "a", "model_1": "b", "ranking_id": 12, "user_id": 7, "created_at": 1683000002.0})",
    R"({"caption": "a cow", "label_0": 0.0, "label_1": 0.0, "has_label": false, "are_different": true, "image_0_uid": "u7", "image_1_uid": "u8", "model_0": "a", "model_1": "b", "ranking_id": 13, "user_id": 9, "created_at": 1683000003.0})",
    R"({"caption": "a cow", "label_0": 1.0, "label_1": 0.0, "has_label": true, "are_different": false, "image_0_uid": "u9", "image_1_uid": "u9", "model_0": "a", "model_1": "a", "ranking_id": 14, "user_id": 9, "created_at": 1683000004.0})",
    R"({"caption": "a fox", "label_0": 1.0, "label_1": 0.0, "has_label": true, "are_different": true, "image_0_uid": "u1", "image_1_uid": "u2", "model_0": "sdxl", "model_1": "sd15", "ranking_id": 10, "user_id": 7, "created_at": 1683000000.0})"};

void check_pickapic(const ImportSummary& s, const std::string& shard_path) {
  EXPECT_EQ(s.records, 6u);
  EXPECT_EQ(s.strict_pairs, 2u);
  EXPECT_EQ(s.ties, 1u);
  EXPECT_EQ(s.skipped, 2u);
  EXPECT_EQ(s.duplicates, 1u);
  auto shard = ShardFile::open(shard_path);
  EXPECT_EQ(shard->read_strings("/pairs/text/model_w", 0, 2), (std::vector<std::string>{"sdxl", "sd21"}));
  EXPECT_EQ(shard->read_strings("/pairs/text/image_w_uid", 0, 2), (std::vector<std::string>{"u1", "u4"}));
  const auto& columns = shard->info().layout.meta_columns;
  const size_t annotator = std::find(columns.begin(), columns.end(), "annotator") - columns.begin();
  ASSERT_LT(annotator, columns.size());
  EXPECT_EQ(shard->meta()[annotator], (std::vector<double>{7, 8}));
}
}  // namespace

TEST(PickAPicImport, JsonLinesPairLogic) {
  TempDir dir;
  std::string rows;
  for (const char* r : kPickRows) rows += std::string(r) + "\n";
  write_text(dir.file("rows.jsonl"), rows);
  PlaceholderEncoder encoder(PlaceholderEncoder::tiny());
  check_pickapic(import_pickapic_jsonl(dir.file("rows.jsonl"), encoder, options_for(dir.file("p.h5"))), dir.file("p.h5"));
}

TEST(PickAPicImport, ParquetThroughPyarrow) {
  TempDir dir;
  std::string rows;
  for (const char* r : kPickRows) rows += std::string(r) + "\n";
  write_text(dir.file("rows.jsonl"), rows);
  // Build a real parquet file with the Pick-a-Pic column types (created_at as a timestamp) using pyarrow.
  write_text(dir.file("make.py"), R"(import json, sys, datetime, pyarrow as pa, pyarrow.parquet as pq
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    r["created_at"] = datetime.datetime.fromtimestamp(r["created_at"], datetime.timezone.utc)
    r["jpg_0"] = b"\xff\xd8jpeg0"; r["jpg_1"] = b"\xff\xd8jpeg1"
pq.write_table(pa.Table.from_pylist(rows), sys.argv[2])
)");
  const Shell made = run(std::string(PREFDIFF_TEST_PYTHON) + " " + dir.file("make.py") + " " + dir.file("rows.jsonl") + " " +
                         dir.file("train-0.parquet"));
  ASSERT_EQ(made.status, 0) << "PREFDIFF_TEST_PYTHON (" << PREFDIFF_TEST_PYTHON << ") needs pyarrow: " << made.output;
  PlaceholderEncoder encoder(PlaceholderEncoder::tiny());
  const ImportSummary s =
      import_pickapic_parquet({dir.file("train-0.parquet")}, PREFDIFF_TEST_PYTHON, encoder, options_for(dir.file("p.h5")));
  check_pickapic(s, dir.file("p.h5"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("p.h5.rows.jsonl")));
}

// ---------------------------------------------------------------- the commands, end to end

TEST(DataCommands, ImportInspectValidate) {
  TempDir dir;
  const std::string tool = PREFDIFF_TEST_DATA_TOOL;
  const Shell imported = run(tool + " data import imagereward " + kImageReward + " -o " + dir.file("ir.h5") + " --family tiny --split test");
  ASSERT_EQ(imported.status, 0) << imported.output;
  EXPECT_NE(imported.output.find("prompts:             466 (463 distinct captions)"), std::string::npos) << imported.output;
  EXPECT_NE(imported.output.find("strict pairs:        6399"), std::string::npos) << imported.output;
  EXPECT_NE(imported.output.find("ties dropped:        831"), std::string::npos) << imported.output;

  const Shell inspected = run(tool + " data inspect " + dir.file("ir.h5") + " --rows 2");
  ASSERT_EQ(inspected.status, 0) << inspected.output;
  for (const char* needle : {"backbone_family      tiny", "encoder              placeholder-hash-v1", "pairs                6399",
                             "/pairs/latent_w, latent_l          float16 6399x4x8x8", "/prompts/embeds                    float16 464x77x32",
                             "[1] pair_id"})
    EXPECT_NE(inspected.output.find(needle), std::string::npos) << needle << " in\n" << inspected.output;

  const Shell valid = run(tool + " data validate " + dir.file("*.h5"));
  EXPECT_EQ(valid.status, 0) << valid.output;
  EXPECT_NE(valid.output.find("1 shard(s) valid"), std::string::npos) << valid.output;

  // Each kind of bad input fails validation with a non-zero status and a message naming it.
  prefdiff::test::write_test_shard(dir.file("bad-dup.h5"));  // fine alone
  std::filesystem::copy_file(dir.file("ir.h5"), dir.file("cut.h5"));
  std::filesystem::resize_file(dir.file("cut.h5"), std::filesystem::file_size(dir.file("cut.h5")) / 3);
  const Shell cut = run(tool + " data validate " + dir.file("cut.h5"));
  EXPECT_EQ(cut.status, 1) << cut.output;
  EXPECT_NE(cut.output.find(dir.file("cut.h5")), std::string::npos) << cut.output;
  const Shell empty = run(tool + " data validate " + dir.file("none-*.h5"));
  EXPECT_EQ(empty.status, 1) << empty.output;
  EXPECT_NE(empty.output.find("matches no shard file"), std::string::npos) << empty.output;
  const Shell mixed = run(tool + " data validate " + dir.file("ir.h5") + " " + dir.file("bad-dup.h5"));
  EXPECT_EQ(mixed.status, 1) << mixed.output;  // different latent shapes and encoders in one set
  EXPECT_NE(mixed.output.find("all shards of one data set must agree"), std::string::npos) << mixed.output;
  const Shell inspect_bad = run(tool + " data inspect " + dir.file("cut.h5"));
  EXPECT_EQ(inspect_bad.status, 1) << inspect_bad.output;
}
