// The CLIP tokenizer against the golden cases (transformers 4.x slow CLIPTokenizer with ftfy): every
// caption's ids and BPE tokens, SD1.5 (pad <|endoftext|>) and SDXL tokenizer_2 (pad "!") padded rows,
// lengths, truncation flags and counts; PickScore-style "pad to longest" rows of the clip_tiny golden;
// and the loader's errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <thread>
#include <unistd.h>

#include "media_fixtures.hpp"
#include "tokenizer/clip_tokenizer.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using prefdiff::tokenizer::ClipTokenizer;
using prefdiff::tokenizer::ClipTokenizerOptions;
using prefdiff::tokenizer::Padding;
using prefdiff::tokenizer::TokenizerError;
namespace t = prefdiff::testing;

namespace {

json load_cases() {
  fs::path path = t::golden_dir() / "clip_tokenizer" / "cases.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string() + " (set PREFDIFF_GOLDEN_DIR)");
  return json::parse(in);
}

const json& cases() {
  static const json c = load_cases();
  return c;
}

fs::path tokenizer_dir() { return t::media_fixture("clip_tokenizer"); }

const ClipTokenizer& sd15() {
  static const ClipTokenizer tok = ClipTokenizer::from_folder(tokenizer_dir());
  return tok;
}

const ClipTokenizer& sdxl2() {
  static const ClipTokenizer tok = [] {
    ClipTokenizerOptions options;
    options.pad_token = "!";
    return ClipTokenizer::from_folder(tokenizer_dir(), options);
  }();
  return tok;
}

std::vector<int32_t> ints(const json& j) { return j.get<std::vector<int32_t>>(); }

std::string describe(const json& c) {
  return "case " + std::to_string(c["index"].get<int>()) + " (" + c["category"].get<std::string>() + "): " +
         c["caption"].dump();
}

fs::path scratch_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("prefdiff_tokenizer_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void copy_tokenizer_files(const fs::path& to) {
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
    fs::copy_file(tokenizer_dir() / f, to / f, fs::copy_options::overwrite_existing);
}

}  // namespace

TEST(ClipTokenizer, SpecialIdsMatchTheReference) {
  const json& meta = cases()["meta"];
  EXPECT_EQ(sd15().bos_id(), meta["bos_id"].get<int>());
  EXPECT_EQ(sd15().eos_id(), meta["eos_id"].get<int>());
  EXPECT_EQ(sd15().pad_id(), meta["pad_id_sd15"].get<int>());
  EXPECT_EQ(sdxl2().pad_id(), meta["pad_id_sdxl2"].get<int>());
  EXPECT_EQ(sd15().model_max_length(), meta["model_max_length"].get<int>());
  EXPECT_EQ(sd15().vocab_size(), meta["vocab_size"].get<int>());
}

TEST(ClipTokenizer, EveryCaptionMatchesTheSlowTokenizerWithFtfy) {
  const int max_length = cases()["meta"]["model_max_length"].get<int>();
  int matched = 0, sdxl_differs = 0;
  for (const json& c : cases()["cases"]) {
    const std::string caption = c["caption"].get<std::string>();
    SCOPED_TRACE(describe(c));
    auto enc = sd15().encode(caption);
    const bool ok = enc.ids == ints(c["ids"]);
    EXPECT_TRUE(ok) << "ids differ";
    EXPECT_EQ(sd15().tokens(caption), c["tokens"].get<std::vector<std::string>>());
    EXPECT_EQ(enc.length, c["n_ids"].get<int>());
    EXPECT_FALSE(enc.truncated);

    auto padded = sd15().encode_padded(caption);
    EXPECT_EQ(padded.ids, ints(c["input_ids_sd15"]));
    EXPECT_EQ(padded.truncated, c["truncated"].get<bool>());
    EXPECT_EQ(padded.length, c["n_ids"].get<int>());
    // The attention mask covers BOS..EOS of the (truncated) row.
    const int real = std::min(c["n_ids"].get<int>(), max_length);
    ASSERT_EQ(padded.attention_mask.size(), static_cast<size_t>(max_length));
    for (int i = 0; i < max_length; ++i) EXPECT_EQ(padded.attention_mask[static_cast<size_t>(i)], i < real ? 1 : 0);

    const auto sdxl_ids = sdxl2().encode(caption).ids;
    EXPECT_EQ(sdxl_ids, ints(c["ids_sdxl2"]));
    EXPECT_EQ(sdxl2().encode_padded(caption).ids, ints(c["input_ids_sdxl2"]));
    // "!" as the pad token changes the ids exactly where the reference flags it.
    EXPECT_EQ(sdxl_ids != enc.ids, c["sdxl2_tokenizes_differently"].get<bool>());
    matched += ok;
    sdxl_differs += sdxl_ids != enc.ids;
  }
  std::printf("  slow tokenizer with ftfy: %d of %zu captions match\n", matched, cases()["cases"].size());
  EXPECT_EQ(sdxl_differs, cases()["meta"]["counts"]["sdxl2_tokenizes_differently"].get<int>());
}

TEST(ClipTokenizer, CountsTruncatedCaptionsAsTheReference) {
  std::vector<std::string> captions;
  for (const json& c : cases()["cases"]) captions.push_back(c["caption"].get<std::string>());
  auto batch = sd15().encode_batch(captions, Padding::max_length);
  EXPECT_EQ(batch.num_truncated, cases()["meta"]["counts"]["truncated"].get<int64_t>());
  for (const auto& row : batch.rows) EXPECT_EQ(row.ids.size(), 77u);
}

TEST(ClipTokenizer, PadToLongestAsPickScoresProcessor) {
  // clip_tiny/inputs.safetensors: the README's two captions, padding=True (to the longest), pad "!".
  const auto golden = t::read_safetensors(t::golden_dir() / "clip_tiny" / "inputs.safetensors");
  const auto& ids = golden.at("input_ids");
  const auto& mask = golden.at("attention_mask");
  const std::vector<std::string> captions = {
      "a painting of an ocean with clouds and birds, day time, low depth field effect", "a photo of a dog"};
  ASSERT_EQ(ids.shape.at(0), static_cast<int64_t>(captions.size()));
  auto batch = sdxl2().encode_batch(captions, Padding::longest, 77);
  const auto width = static_cast<size_t>(ids.shape.at(1));
  for (size_t r = 0; r < captions.size(); ++r) {
    ASSERT_EQ(batch.rows[r].ids.size(), width);
    for (size_t i = 0; i < width; ++i) {
      EXPECT_EQ(batch.rows[r].ids[i], static_cast<int32_t>(ids.values[r * width + i])) << "row " << r << " col " << i;
      EXPECT_EQ(batch.rows[r].attention_mask[i], static_cast<int32_t>(mask.values[r * width + i]));
    }
  }
}

TEST(ClipTokenizer, ThreadsGetTheSameIds) {
  std::vector<std::string> captions;
  std::vector<std::vector<int32_t>> expected;
  for (const json& c : cases()["cases"]) {
    captions.push_back(c["caption"].get<std::string>());
    expected.push_back(ints(c["ids"]));
  }
  ClipTokenizer fresh = ClipTokenizer::from_folder(tokenizer_dir());  // empty cache: threads race to fill it
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < captions.size(); ++i)
          mismatches[static_cast<size_t>(t)] += fresh.encode(captions[(i + static_cast<size_t>(t) * 7) % captions.size()]).ids !=
                                                expected[(i + static_cast<size_t>(t) * 7) % captions.size()];
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(ClipTokenizerErrors, MissingVocabNamesTheFile) {
  fs::path dir = scratch_dir("novocab");
  copy_tokenizer_files(dir);
  fs::remove(dir / "vocab.json");
  try {
    ClipTokenizer::from_folder(dir);
    FAIL() << "no error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "vocab.json").string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(ClipTokenizerErrors, MissingMergesNamesTheFile) {
  fs::path dir = scratch_dir("nomerges");
  copy_tokenizer_files(dir);
  fs::remove(dir / "merges.txt");
  try {
    ClipTokenizer::from_folder(dir);
    FAIL() << "no error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "merges.txt").string()), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(ClipTokenizerErrors, MalformedJsonNamesTheFile) {
  for (const char* file : {"vocab.json", "tokenizer_config.json", "special_tokens_map.json"}) {
    fs::path dir = scratch_dir("badjson");
    copy_tokenizer_files(dir);
    std::ofstream(dir / file, std::ios::trunc) << "{\"bos_token\": ";
    try {
      ClipTokenizer::from_folder(dir);
      ADD_FAILURE() << "no error for a malformed " << file;
    } catch (const TokenizerError& e) {
      EXPECT_NE(std::string(e.what()).find((dir / file).string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("cannot parse"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
  }
}

TEST(ClipTokenizerErrors, MalformedMergeLineNamesFileAndLine) {
  fs::path dir = scratch_dir("badmerge");
  copy_tokenizer_files(dir);
  std::ofstream(dir / "merges.txt", std::ios::trunc) << "#version: 0.2\ni n\nthis line has three\n";
  try {
    ClipTokenizer::from_folder(dir);
    FAIL() << "no error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("merges.txt' line 3"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(ClipTokenizerErrors, PadTokenOutsideTheVocabularyIsRefused) {
  ClipTokenizerOptions options;
  options.pad_token = "<|no such token|>";
  try {
    ClipTokenizer::from_folder(tokenizer_dir(), options);
    FAIL() << "no error";
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("<|no such token|>"), std::string::npos) << e.what();
  }
}
