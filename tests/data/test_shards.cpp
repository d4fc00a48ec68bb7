// Pair shards: round trip through the writer, ShardFile, the built-in hdf5-pairs source and the plugin
// .so; and every kind of bad input refused by open and reported by validate, naming file, dataset and problem.
#include <gtest/gtest.h>

#include <H5Cpp.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "h5_util.hpp"
#include "plugin_library.hpp"
#include "prefdiff/data/expectations.hpp"
#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/data/shard_set.hpp"
#include "prefdiff/data/shard_validate.hpp"
#include "prefdiff/data/hdf5_pairs_source.hpp"
#include "prefdiff/instance/data_source.hpp"
#include "shard_fixture.hpp"

using namespace prefdiff::data;
using prefdiff::test::ShardContents;
using prefdiff::test::ShardSpec;
using prefdiff::test::TempDir;
using prefdiff::test::write_test_shard;

namespace {

// The error text of opening `path`, or "" when it opened.
std::string open_error(const std::string& path) {
  try {
    ShardFile::open(path);
  } catch (const ShardError& e) {
    return e.what();
  }
  return "";
}

// All problems validate reports for `patterns`, joined.
std::string validate_text(const std::vector<std::string>& patterns, size_t* count = nullptr) {
  const ValidationReport report = validate_shards(patterns);
  std::string text;
  for (const auto& s : report.shards)
    for (const auto& p : s.problems) text += p + "\n";
  for (const auto& p : report.problems) text += p + "\n";
  if (count != nullptr) *count = report.problem_count();
  return text;
}

#define EXPECT_CONTAINS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "missing \"" << (needle) << "\" in:\n" << (haystack)

// Replaces dataset `name` of a shard by one of another type or shape (what a buggy third-party writer does).
void replace_dataset(const std::string& path, const std::string& name, const H5::DataType& type, std::vector<hsize_t> dims) {
  H5::H5File file(path, H5F_ACC_RDWR);
  file.unlink(name);
  H5::DataSet d = file.createDataSet(name, type, H5::DataSpace(static_cast<int>(dims.size()), dims.data()));
  size_t n = 1;
  for (hsize_t x : dims) n *= x;
  std::vector<double> zeros(n, 0.0);
  d.write(zeros.data(), H5::PredType::NATIVE_DOUBLE);
}

void compare_rows(const std::vector<uint8_t>& bytes, size_t row, const std::vector<uint16_t>& expected) {
  ASSERT_EQ(0, std::memcmp(bytes.data() + row * expected.size() * 2, expected.data(), expected.size() * 2)) << "row " << row;
}

}  // namespace

TEST(ShardRoundTrip, ShardFileReadsBackEverythingWritten) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("a.h5"));
  auto shard = ShardFile::open(c.path);
  const ShardInfo& info = shard->info();
  EXPECT_EQ(info.pair_count, c.pair_ids.size());
  EXPECT_EQ(info.prompt_count, static_cast<int64_t>(c.captions.size()));
  EXPECT_EQ(info.empty_prompt, 0);
  EXPECT_EQ(info.attributes.backbone_family, "tiny");
  EXPECT_EQ(info.attributes.latent_shape, (std::vector<int64_t>{4, 4, 4}));
  EXPECT_DOUBLE_EQ(info.attributes.latent_scale_factor, 0.18215);
  EXPECT_EQ(info.attributes.encoder, "test-fixture");
  EXPECT_EQ(info.attributes.format_version, kFormatVersion);
  EXPECT_TRUE(info.layout.latent_std);
  EXPECT_TRUE(info.layout.time_ids);
  EXPECT_EQ(info.layout.pooled_dim, 6);
  EXPECT_EQ(shard->pair_ids(), c.pair_ids);
  EXPECT_EQ(shard->prompts(), c.prompt);
  EXPECT_EQ(shard->meta().at(0), c.margin);
  for (uint64_t i = 0; i < info.pair_count; ++i) {
    std::vector<uint16_t> row(c.w[i].size());
    shard->read_rows(ShardTensor::kLatentW, i, 1, row.data());
    ASSERT_EQ(row, c.w[i]);
    shard->read_rows(ShardTensor::kLatentLStd, i, 1, row.data());
    ASSERT_EQ(row, c.l_std[i]);
    std::vector<float> t(12);
    shard->read_rows(ShardTensor::kTimeIds, i, 1, t.data());
    ASSERT_EQ(t, c.time_ids[i]);
  }
  EXPECT_EQ(shard->read_strings(path::kText, 0, c.captions.size()), c.captions);
  EXPECT_EQ(shard->read_strings("/pairs/text/note", 3, 1), std::vector<std::string>{"note 3"});
  EXPECT_FALSE(std::filesystem::exists(c.path + ".partial"));
}

// The same checks through the dataset ABI, once in-process and once through the plugin library.
void check_source(prefdiff::instance::DataSource& source, const ShardContents& c) {
  EXPECT_EQ(source.pair_count(), c.pair_ids.size());
  EXPECT_EQ(source.attribute("backbone_family"), "tiny");
  EXPECT_EQ(source.attribute("latent_shape"), "4x4x4");
  EXPECT_EQ(source.attribute("format_version"), "1");
  ASSERT_NE(source.find("meta/margin"), nullptr);
  EXPECT_EQ(source.find("meta/margin")->flags, PD_TENSOR_METADATA);
  EXPECT_EQ(source.find("prompt_embeds")->shape, (std::vector<int64_t>{5, 8}));
  EXPECT_EQ(source.find("prompt_embeds")->flags, PD_TENSOR_TEXT);
  EXPECT_EQ(source.find("latent_w")->dtype, PD_DTYPE_F16);
  const std::vector<uint64_t> indices{7, 0, 7, 39, 12};
  const std::vector<uint8_t> dropped{0, 1, 0, 0, 1};
  std::vector<uint8_t> w(5 * 64 * 2), embeds(5 * 40 * 2), pooled(5 * 6 * 2);
  std::vector<uint64_t> ids(5);
  std::vector<double> margin(5);
  source.read(indices.data(), indices.size(), dropped.data(),
              {{"latent_w", w.data(), w.size()}, {"prompt_embeds", embeds.data(), embeds.size()}, {"pooled_embeds", pooled.data(), pooled.size()},
               {"pair_id", ids.data(), 40}, {"meta/margin", margin.data(), 40}});
  for (size_t i = 0; i < indices.size(); ++i) {
    compare_rows(w, i, c.w[indices[i]]);
    const size_t prompt = dropped[i] ? 0 : static_cast<size_t>(c.prompt[indices[i]]);
    compare_rows(embeds, i, c.embeds[prompt]);
    compare_rows(pooled, i, c.pooled[prompt]);
    EXPECT_EQ(ids[i], c.pair_ids[indices[i]]);
    EXPECT_EQ(margin[i], c.margin[indices[i]]);
  }
  // The export layer refuses bad requests before the source sees them.
  const uint64_t bad = 40;
  EXPECT_THROW(source.read(&bad, 1, nullptr, {{"latent_w", w.data(), w.size()}}), std::runtime_error);
  EXPECT_THROW(source.read(indices.data(), 5, nullptr, {{"latent_w", w.data(), 10}}), std::runtime_error);
  try {
    source.read(indices.data(), 1, nullptr, {{"latents", w.data(), w.size()}});
    ADD_FAILURE() << "unknown tensor accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(e.what(), "unknown tensor 'latents'");
  }
}

TEST(ShardRoundTrip, BuiltInSourceServesTheDatasetAbi) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("a.h5"));
  auto source = open_hdf5_pairs(c.path);
  EXPECT_EQ(source->id(), "hdf5-pairs");
  check_source(*source, c);
}

TEST(ShardRoundTrip, PluginLibraryServesTheDatasetAbi) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("a.h5"));
  namespace instance = prefdiff::instance;
  const instance::PluginLibrary library =
      instance::load_library(std::string(PREFDIFF_TEST_PLUGIN_DIR) + "/libprefdiff_dataset_hdf5_pairs.so", nullptr);
  EXPECT_EQ(library.kind(), PD_KIND_DATASET);
  instance::DataSource source(library, instance::resolve_or_throw(library, {{"shards", instance::Value::string(c.path), "", ""}}),
                              nullptr);
  check_source(source, c);
}

TEST(ShardSetTest, GlobsAndBracesCombineShardsInNameOrder) {
  TempDir dir;
  ShardSpec second;
  second.first_id = 5000;
  second.pairs = 25;
  const ShardContents b = write_test_shard(dir.file("train-1.h5"), second);
  const ShardContents a = write_test_shard(dir.file("train-0.h5"));
  ShardSet set({dir.file("train-*.h5")});
  EXPECT_EQ(set.shard_count(), 2u);
  EXPECT_EQ(set.info().pair_count, 65u);
  EXPECT_EQ(set.locate(39), std::make_pair(size_t{0}, uint64_t{39}));
  EXPECT_EQ(set.locate(40), std::make_pair(size_t{1}, uint64_t{0}));
  ShardSet braces({dir.path() + "/{train-0,train-1}.h5"});
  EXPECT_EQ(braces.info().pair_count, 65u);
  EXPECT_EQ(set.info().attributes.back().second, a.path + " and 1 more");
}

// ---------------------------------------------------------------- bad input

TEST(BadShard, TruncatedFile) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("cut.h5"));
  const auto size = std::filesystem::file_size(c.path);
  std::filesystem::resize_file(c.path, size / 2);
  const std::string error = open_error(c.path);
  EXPECT_CONTAINS(error, c.path);
  EXPECT_CONTAINS(error, "truncated");
  size_t problems = 0;
  EXPECT_CONTAINS(validate_text({c.path}, &problems), "truncated");
  EXPECT_GT(problems, 0u);
}

TEST(BadShard, NotAnHdf5File) {
  TempDir dir;
  const std::string path = dir.file("text.h5");
  { std::ofstream(path) << "not a shard"; }
  const std::string error = open_error(path);
  EXPECT_CONTAINS(error, path);
  EXPECT_CONTAINS(error, "not an HDF5 file");
  EXPECT_CONTAINS(validate_text({path}), "not an HDF5 file");
}

TEST(BadShard, WrongDtype) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("dtype.h5"));
  replace_dataset(c.path, "/pairs/prompt", H5::PredType::IEEE_F64LE, {40});
  const std::string error = open_error(c.path);
  EXPECT_CONTAINS(error, c.path + ": /pairs/prompt: dtype is float64, the format requires int64");
  EXPECT_CONTAINS(validate_text({c.path}), "/pairs/prompt: dtype is float64");
}

TEST(BadShard, WrongRank) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("rank.h5"));
  replace_dataset(c.path, "/pairs/latent_l", prefdiff::data::h5::memory_type(PD_DTYPE_F16), {40, 4, 16});
  const std::string error = open_error(c.path);
  EXPECT_CONTAINS(error, c.path + ": /pairs/latent_l: rank is 3");
  EXPECT_CONTAINS(validate_text({c.path}), "/pairs/latent_l: rank is 3");
}

TEST(BadShard, WrongShape) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("shape.h5"));
  replace_dataset(c.path, "/pairs/latent_l", prefdiff::data::h5::memory_type(PD_DTYPE_F16), {40, 4, 4, 5});
  EXPECT_CONTAINS(open_error(c.path), "/pairs/latent_l: shape is 40x4x4x5, expected 40x4x4x4");
}

TEST(BadShard, OutOfRangePromptIndex) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("prompt.h5"));
  {
    H5::H5File file(c.path, H5F_ACC_RDWR);
    H5::DataSet d = file.openDataSet("/pairs/prompt");
    std::vector<int64_t> values(c.prompt);
    values[5] = 999;
    values[9] = -1;
    d.write(values.data(), H5::PredType::NATIVE_INT64);
  }
  const std::string error = open_error(c.path);
  EXPECT_CONTAINS(error, c.path + ": /pairs/prompt: 2 prompt indices outside the prompt table [0, 7)");
  EXPECT_CONTAINS(error, "row 5 -> 999");
  EXPECT_CONTAINS(validate_text({c.path}), "row 9 -> -1");
}

TEST(BadShard, MissingDatasetAndUnsupportedVersion) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("old.h5"));
  {
    H5::H5File file(c.path, H5F_ACC_RDWR);
    file.unlink("/pairs/pair_id");
    H5::Group root = file.openGroup("/");
    root.removeAttr("format_version");
    int64_t two = 2;
    root.createAttribute("format_version", H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_INT64, &two);
  }
  const std::string error = open_error(c.path);
  EXPECT_CONTAINS(error, "2 problems in shard " + c.path);
  EXPECT_CONTAINS(error, "attribute 'format_version': is 2, this reader supports 1");
  EXPECT_CONTAINS(error, "/pairs/pair_id: missing");
  size_t problems = 0;
  validate_text({c.path}, &problems);
  EXPECT_EQ(problems, 2u);
}

TEST(BadShard, MismatchedAttributesBetweenShards) {
  TempDir dir;
  write_test_shard(dir.file("a.h5"));
  ShardSpec other;
  other.family = "sdxl";
  other.first_id = 9000;
  write_test_shard(dir.file("b.h5"), other);
  try {
    ShardSet set({dir.file("*.h5")});
    ADD_FAILURE() << "mismatched shards accepted";
  } catch (const ShardError& e) {
    EXPECT_CONTAINS(e.what(), dir.file("b.h5") + ": attribute backbone_family is 'sdxl' but " + dir.file("a.h5") + " has 'tiny'");
  }
  EXPECT_CONTAINS(validate_text({dir.file("*.h5")}), "attribute backbone_family is 'sdxl'");
}

TEST(BadShard, MismatchedAttributesAgainstTheRecipe) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("a.h5"));
  auto source = open_hdf5_pairs(c.path);
  DataExpectations expected;
  expected.backbone_family = "sd15";
  expected.latent_shape = std::vector<int64_t>{4, 64, 64};
  expected.latent_scale_factor = 0.18215;  // matches
  expected.vae_id = "stabilityai/sd-vae-ft-mse";
  try {
    check_expectations(*source, expected);
    ADD_FAILURE() << "mismatch accepted";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_CONTAINS(m, "dataset hdf5-pairs (" + c.path + ")");
    EXPECT_CONTAINS(m, "attribute 'backbone_family' is 'tiny' in the data but the recipe expects 'sd15'");
    EXPECT_CONTAINS(m, "attribute 'latent_shape' is '4x4x4' in the data but the recipe expects '4x64x64'");
    EXPECT_CONTAINS(m, "attribute 'vae_id' is 'test-vae' in the data but the recipe expects 'stabilityai/sd-vae-ft-mse'");
    EXPECT_EQ(m.find("latent_scale_factor"), std::string::npos);
  }
  DataExpectations matching;
  matching.backbone_family = "tiny";
  matching.latent_scale_factor = 0.18215;
  EXPECT_NO_THROW(check_expectations(*source, matching));
}

TEST(BadShard, EmptyGlob) {
  TempDir dir;
  const std::string pattern = dir.file("nothing-*.h5");
  try {
    ShardSet set({pattern});
    ADD_FAILURE() << "empty glob accepted";
  } catch (const ShardError& e) {
    EXPECT_CONTAINS(e.what(), pattern + ": matches no shard file");
  }
  try {
    open_hdf5_pairs(pattern);
    ADD_FAILURE() << "empty glob accepted by the source";
  } catch (const std::runtime_error& e) {
    EXPECT_CONTAINS(e.what(), "matches no shard file");
  }
  EXPECT_CONTAINS(validate_text({pattern}), pattern + ": matches no shard file");
}

TEST(BadShard, DuplicatePairIdsAcrossShards) {
  TempDir dir;
  write_test_shard(dir.file("a.h5"));
  ShardSpec overlapping;
  overlapping.first_id = 1030;  // ids 1030..1069 overlap a.h5's 1000..1039
  write_test_shard(dir.file("b.h5"), overlapping);
  try {
    ShardSet set({dir.file("*.h5")});
    ADD_FAILURE() << "duplicate pair ids accepted";
  } catch (const ShardError& e) {
    EXPECT_CONTAINS(e.what(), dir.file("b.h5") + ": /pairs/pair_id: pair id ");
    EXPECT_CONTAINS(e.what(), "also occurs in " + dir.file("a.h5"));
  }
  EXPECT_CONTAINS(validate_text({dir.file("*.h5")}), "also occurs in");
}

TEST(BadShard, NonFiniteLatentsFoundByValidate) {
  TempDir dir;
  const ShardContents c = write_test_shard(dir.file("nan.h5"));
  {
    H5::H5File file(c.path, H5F_ACC_RDWR);
    H5::DataSet d = file.openDataSet("/pairs/latent_w");
    H5::DataSpace space = d.getSpace();
    hsize_t start[4] = {17, 0, 0, 0}, count[4] = {1, 1, 1, 1};
    space.selectHyperslab(H5S_SELECT_SET, count, start);
    const uint16_t nan = 0x7e00;
    H5::DataSpace one(4, count);
    d.write(&nan, prefdiff::data::h5::memory_type(PD_DTYPE_F16), one, space);
  }
  EXPECT_EQ(open_error(c.path), "");  // cheap open checks do not read latents
  EXPECT_CONTAINS(validate_text({c.path}), c.path + ": /pairs/latent_w: 1 rows hold NaN or Inf (first: row 17)");
}

TEST(ShardWriterTest, RefusesDuplicatesAndMissingEmptyPromptAndLeavesNoPartialFile) {
  TempDir dir;
  ShardAttributes attributes;
  attributes.backbone_family = "tiny";
  attributes.latent_shape = {1, 1, 2};
  attributes.latent_scale_factor = 1.0;
  attributes.encoder = "test";
  ShardLayout layout;
  layout.embed_tokens = 1;
  layout.embed_dim = 2;
  const std::string path = dir.file("w.h5");
  {
    ShardWriter writer(path, attributes, layout);
    const uint16_t two[2] = {0, 0};
    const int64_t row = writer.add_prompt("a cat", two, nullptr);
    EXPECT_EQ(writer.add_prompt("a cat", two, nullptr), row);  // dedup
    PairRecord r;
    r.pair_id = 1;
    r.prompt = row;
    r.latent_w = r.latent_l = two;
    writer.add_pair(r);
    EXPECT_THROW(writer.add_pair(r), std::invalid_argument);
    r.pair_id = 2;
    r.prompt = 5;
    EXPECT_THROW(writer.add_pair(r), std::invalid_argument);
    EXPECT_THROW(writer.close(), std::invalid_argument);  // no empty prompt
  }
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".partial"));
}
