// `prefdiff data import` with a real model folder, end to end: the real ImageReward generations of
// tests/fixtures/public and a Pick-a-Pic-style parquet (written by import_reference.py with pyarrow) are
// imported with the golden set's pipeline_sd15_tiny, one latent of each source and one prompt embedding are
// checked against diffusers' AutoencoderKL and transformers' CLIPTextModel run on the same files, the bad
// inputs are skipped, counted and reported, an interrupted import resumes, other weights are refused, and
// `prefdiff train` runs a few steps on the result.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/golden.hpp"
#include "prefdiff/data/expectations.hpp"
#include "prefdiff/data/half.hpp"
#include "prefdiff/data/hdf5_pairs_source.hpp"
#include "prefdiff/data/model_encoder.hpp"
#include "prefdiff/data/shard_file.hpp"
#include "prefdiff/data/shard_format.hpp"
#include "prefdiff/model_io/safetensors.hpp"

namespace fs = std::filesystem;
using namespace prefdiff::data;

namespace {

struct Shell {
  int status;
  std::string output;
};

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

std::string quote(const fs::path& p) { return "'" + p.string() + "'"; }

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Inputs and references, made once for the whole suite (about 20 s of Python).
class ImportEndToEnd : public ::testing::Test {
 protected:
  static fs::path dir_, model_;
  static nlohmann::json reference_;
  static bool ready_;

  // The references of this golden set, made by the ctest fixture import_e2e_reference (tests/data/CMakeLists.txt);
  // made here when they are missing or were made for another model folder (PREFDIFF_GOLDEN_DIR).
  static void SetUpTestSuite() {
    model_ = prefdiff::testing::golden_dir() / "pipeline_sd15_tiny";
    const char* set = std::getenv("PREFDIFF_GOLDEN_SET");
    const fs::path fixture = fs::path(PREFDIFF_TEST_IMPORT_E2E_ROOT) / (set != nullptr ? set : "main");
    dir_ = fs::temp_directory_path() / ("prefdiff_import_e2e_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::path refs = fixture;
    if (!fs::exists(fixture / "reference.json") ||
        nlohmann::json::parse(read_text(fixture / "reference.json")).value("model", "") != fs::absolute(model_).string()) {
      refs = dir_ / "reference";
      const Shell made = run(std::string(PREFDIFF_TEST_PYTHON) + " " + PREFDIFF_TEST_SOURCE_DIR + "/import_reference.py --model " +
                             quote(model_) + " --public " + PREFDIFF_TEST_PUBLIC_DATA + " --out " + quote(refs));
      if (made.status != 0) std::fprintf(stderr, "import_reference.py failed:\n%s\n", made.output.c_str());
    }
    // Imports write next to their inputs' copies: each test process works in its own folder.
    fs::copy(refs, dir_, fs::copy_options::recursive | fs::copy_options::skip_existing);
    ready_ = fs::exists(dir_ / "reference.json");
    if (ready_) reference_ = nlohmann::json::parse(read_text(dir_ / "reference.json"));
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    ASSERT_TRUE(fs::exists(model_ / "vae" / "config.json")) << model_ << " missing. " << prefdiff::testing::golden_hint();
    ASSERT_TRUE(ready_) << "the reference script failed (see stderr)";
  }

  static Shell prefdiff(const std::string& args) { return run(std::string(PREFDIFF_TEST_PREFDIFF) + " " + args); }
  static std::string import_imagereward(const fs::path& out, const std::string& extra) {
    return "data import imagereward " + quote(dir_ / "imagereward.json") + " -o " + quote(out) + " --images-root " +
           quote(dir_ / "images") + " --device cpu " + extra;
  }
  static at::Tensor ref(const std::string& name) {
    static const prefdiff::model_io::SafetensorsFile file = prefdiff::model_io::SafetensorsFile::open(dir_ / "reference.safetensors");
    return file.view(name).clone();
  }
};
fs::path ImportEndToEnd::dir_, ImportEndToEnd::model_;
nlohmann::json ImportEndToEnd::reference_;
bool ImportEndToEnd::ready_ = false;

std::vector<fs::path> shards_of(const fs::path& stem) {
  std::vector<fs::path> out;
  for (int k = 0;; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "-%05d.h5", k);
    const fs::path p = stem.string() + name;
    if (!fs::exists(p)) break;
    out.push_back(p);
  }
  return out;
}

at::Tensor half_rows(ShardFile& shard, ShardTensor tensor, uint64_t row, at::IntArrayRef shape) {
  std::vector<uint16_t> bits(shard.row_bytes(tensor) / 2);
  shard.read_rows(tensor, row, 1, bits.data());
  at::Tensor out = at::empty({static_cast<int64_t>(bits.size())}, at::kFloat);
  for (size_t k = 0; k < bits.size(); ++k) out[static_cast<int64_t>(k)] = half_to_float(bits[k]);
  return out.reshape(shape);
}

// The float32 references differ from float64 by their own rounding; ours (float32, another implementation,
// stored as float16) may differ by that twice over plus the float16 rounding (half an ulp: 2^-11 relative).
::testing::AssertionResult matches_reference(const std::string& name, const at::Tensor& ours, const at::Tensor& ref32,
                                             const at::Tensor& ref64) {
  const double err32 = (ref32.to(at::kDouble) - ref64).abs().max().item<double>();
  const double atol = 4.0 * std::max(err32, 1e-8) + 6e-8;  // + the float16 subnormal step near zero
  const double rtol = std::ldexp(1.0, -10);
  return prefdiff::testing::close_elementwise(name, ours, ref32, atol, rtol);
}

}  // namespace

TEST_F(ImportEndToEnd, ImageRewardLatentsAndEmbeddingsMatchDiffusersAndTransformers) {
  const fs::path stem = dir_ / "ir";
  const Shell r = prefdiff(import_imagereward(stem.string() + ".h5", "--model " + quote(model_) + " --shard-size 4 --progress"));
  ASSERT_EQ(r.status, 0) << r.output;
  // The ocean group's 6 strict pairs; the broken group's 3 pairs all name the missing or the truncated image.
  EXPECT_NE(r.output.find("strict pairs:        6"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("unreadable images:   2 (3 pairs dropped"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("captions truncated:  1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("images/s"), std::string::npos) << "no progress line: " << r.output;
  const std::string report = read_text(dir_ / "ir.import-report.txt");
  EXPECT_NE(report.find("missing\t"), std::string::npos) << report;
  EXPECT_NE(report.find("missing.webp"), std::string::npos) << report;
  EXPECT_NE(report.find("truncated\t"), std::string::npos) << report;
  EXPECT_NE(report.find("truncated.webp"), std::string::npos) << report;
  EXPECT_NE(report.find(reference_["long_caption"].get<std::string>()), std::string::npos) << report;

  const std::vector<fs::path> shards = shards_of(stem);
  ASSERT_EQ(shards.size(), 2u);  // 4 + 2 pairs
  const int64_t side = reference_["resolution"].get<int64_t>();
  bool latent_checked = false, embeds_checked = false;
  for (const fs::path& path : shards) {
    std::unique_ptr<ShardFile> shard = ShardFile::open(path.string());
    const ShardInfo& info = shard->info();
    EXPECT_EQ(info.attributes.encoder, kModelEncoderId);
    EXPECT_EQ(info.attributes.vae_id, model_component_id(model_, "AutoencoderKL", "vae"));
    EXPECT_EQ(info.attributes.text_encoder_id, model_component_id(model_, "CLIPTextModel", "text_encoder", "tokenizer"));
    EXPECT_EQ(info.attributes.vae_id.rfind("AutoencoderKL:pipeline_sd15_tiny/vae:", 0), 0u) << info.attributes.vae_id;
    const std::vector<int64_t> latent = info.attributes.latent_shape;
    ASSERT_EQ(latent.size(), 3u);
    EXPECT_EQ(latent[1] * 2, side);  // the tiny VAE downsamples by 2 (two blocks)
    const std::vector<std::string> winners = shard->read_strings(std::string(path::kTextGroup) + "/image_w", 0, info.pair_count);
    const std::vector<std::string> losers = shard->read_strings(std::string(path::kTextGroup) + "/image_l", 0, info.pair_count);
    for (uint64_t row = 0; row < info.pair_count && !latent_checked; ++row) {
      const bool w = winners[row] == "2.webp", l = losers[row] == "2.webp";
      if (!w && !l) continue;
      const at::Tensor ours = half_rows(*shard, w ? ShardTensor::kLatentW : ShardTensor::kLatentL, row, latent);
      EXPECT_TRUE(matches_reference("latent of 2.webp", ours, ref("latent_ir_2"), ref("latent_ir_2_f64")));
      latent_checked = true;
    }
    const std::vector<std::string> captions = shard->read_strings(path::kText, 0, static_cast<uint64_t>(info.prompt_count));
    for (size_t p = 0; p < captions.size() && !embeds_checked; ++p) {
      if (captions[p] != reference_["caption"].get<std::string>()) continue;
      const at::Tensor ours = half_rows(*shard, ShardTensor::kEmbeds, p, {info.layout.embed_tokens, info.layout.embed_dim});
      EXPECT_TRUE(matches_reference("prompt embedding", ours, ref("embeds"), ref("embeds_f64")));
      embeds_checked = true;
    }
  }
  EXPECT_TRUE(latent_checked && embeds_checked) << "2.webp or the caption not found in the shards";

  // The recipe side: expectations built from the same folder accept the shards, from other weights refuse them.
  auto source = open_hdf5_pairs((stem.string() + "-*.h5"));
  DataExpectations same;
  same.vae_id = model_component_id(model_, "AutoencoderKL", "vae");
  same.text_encoder_id = model_component_id(model_, "CLIPTextModel", "text_encoder", "tokenizer");
  same.encoder = kModelEncoderId;
  EXPECT_TRUE(expectation_mismatches(*source, same).empty());
  DataExpectations other = same;
  other.vae_id = model_component_id(dir_ / "models" / "other_weights", "AutoencoderKL", "vae");
  ASSERT_NE(*other.vae_id, *same.vae_id) << "a changed weight must change the id";
  EXPECT_EQ(model_component_id(dir_ / "models" / "other_weights", "CLIPTextModel", "text_encoder", "tokenizer").substr(
                std::string("CLIPTextModel:other_weights").size()),
            same.text_encoder_id->substr(std::string("CLIPTextModel:pipeline_sd15_tiny").size()))
      << "unchanged text encoder files, same content hash";
  const std::vector<std::string> mismatches = expectation_mismatches(*source, other);
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_NE(mismatches[0].find("attribute 'vae_id' is '" + *same.vae_id + "' in the data but the recipe expects '" + *other.vae_id),
            std::string::npos)
      << mismatches[0];

  // A few training steps on the imported pairs with the same model folder's UNet.
  const fs::path recipe = dir_ / "train.toml";
  std::ofstream(recipe) << "[run]\nname = \"import-e2e\"\nseed = 0\noutput_dir = " << quote(dir_ / "runs")
                        << "\n\n[backbone]\nid = \"unet2d\"\npretrained = " << quote(model_)
                        << "\ndtype = \"float32\"\nreference_dtype = \"float32\"\n\n[data]\nid = \"hdf5-pairs\"\nshards = "
                        << quote(stem.string() + "-*.h5")
                        << "\n\n[noise]\nid = \"none\"\n\n[objective]\nid = \"dpo\"\nbeta = 5000\n\n[optim]\nname = \"adamw\"\nlr = 1e-5\n\n"
                           "[train]\nsteps = 3\nbatch_size = 2\ngrad_accum = 1\ncheckpoint_every = 3\ndevice = \"cpu\"\nthreads = 2\n\n"
                           "[log]\nevery = 1\n";
  const Shell trained = prefdiff("train " + quote(recipe));
  ASSERT_EQ(trained.status, 0) << trained.output;
  const std::string metrics = read_text(dir_ / "runs" / "import-e2e" / "metrics.jsonl");
  size_t rows = 0;
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json row = nlohmann::json::parse(line);
    if (!row.contains("loss")) continue;
    ++rows;
    EXPECT_TRUE(std::isfinite(row["loss"].get<double>())) << line;
  }
  EXPECT_EQ(rows, 3u) << metrics;
}

TEST_F(ImportEndToEnd, PickAPicParquetLatentMatchesDiffusers) {
  const fs::path out = dir_ / "pp.h5";
  const Shell r = prefdiff("data import pick-a-pic " + quote(dir_ / "pickapic.parquet") + " -o " + quote(out) + " --python " +
                           PREFDIFF_TEST_PYTHON + " --model " + quote(model_) + " --device cpu");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("strict pairs:        2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ties dropped:        1"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "pp.h5.images")) << "the converter's JPEG files are temporary";
  std::unique_ptr<ShardFile> shard = ShardFile::open(out.string());
  const ShardInfo& info = shard->info();
  const std::vector<std::string> w = shard->read_strings(std::string(path::kTextGroup) + "/image_w_uid", 0, info.pair_count);
  const std::vector<std::string> l = shard->read_strings(std::string(path::kTextGroup) + "/image_l_uid", 0, info.pair_count);
  bool checked = false;
  for (uint64_t row = 0; row < info.pair_count && !checked; ++row) {
    if (w[row] != "pp-3" && l[row] != "pp-3") continue;
    const at::Tensor ours = half_rows(*shard, w[row] == "pp-3" ? ShardTensor::kLatentW : ShardTensor::kLatentL, row, info.attributes.latent_shape);
    EXPECT_TRUE(matches_reference("latent of Pick-a-Pic image pp-3 (JPEG bytes)", ours, ref("latent_pp_3"), ref("latent_pp_3_f64")));
    checked = true;
  }
  EXPECT_TRUE(checked) << "pp-3 not in the shard";
}

TEST_F(ImportEndToEnd, StrictStopsAtTheFirstUnreadableImage) {
  const Shell r = prefdiff(import_imagereward(dir_ / "strict.h5", "--model " + quote(model_) + " --strict"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--strict"), std::string::npos) << r.output;
  EXPECT_TRUE(r.output.find("missing.webp") != std::string::npos || r.output.find("truncated.webp") != std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_ / "strict.h5"));
  EXPECT_FALSE(fs::exists(dir_ / "strict.h5.partial")) << "a failed import leaves no half-written shard";
}

TEST_F(ImportEndToEnd, AnInterruptedImportResumesAtTheNextShardAndRefusesOtherWeights) {
  const fs::path stem = dir_ / "resume";
  const std::string args = import_imagereward(stem.string() + ".h5", "--model " + quote(model_) + " --shard-size 2");
  ASSERT_EQ(prefdiff(args).status, 0);
  std::vector<fs::path> first = shards_of(stem);
  ASSERT_EQ(first.size(), 3u);
  std::set<uint64_t> ids_before;
  for (const fs::path& p : first) {
    const std::unique_ptr<ShardFile> shard = ShardFile::open(p.string());  // pair_ids() lives in the shard
    ids_before.insert(shard->pair_ids().begin(), shard->pair_ids().end());
  }
  // As if killed while writing the last shard: it was never renamed into place, its .partial is left over.
  const at::Tensor last_before = half_rows(*ShardFile::open(first[2].string()), ShardTensor::kLatentW, 0, {-1});
  fs::remove(first[2]);
  std::ofstream(first[2].string() + ".partial") << "half a shard";
  const Shell resumed = prefdiff(args);
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed:             2 finished shard(s) of an earlier run kept (4 pairs)"), std::string::npos)
      << resumed.output;
  EXPECT_NE(resumed.output.find("strict pairs:        6"), std::string::npos) << resumed.output;
  ASSERT_EQ(shards_of(stem).size(), 3u);
  EXPECT_FALSE(fs::exists(first[2].string() + ".partial"));
  std::set<uint64_t> ids_after;
  for (const fs::path& p : shards_of(stem)) {
    const std::unique_ptr<ShardFile> shard = ShardFile::open(p.string());
    ids_after.insert(shard->pair_ids().begin(), shard->pair_ids().end());
  }
  EXPECT_EQ(ids_after, ids_before);
  const at::Tensor last_after = half_rows(*ShardFile::open(first[2].string()), ShardTensor::kLatentW, 0, {-1});
  EXPECT_TRUE(at::allclose(last_after, last_before, 0, std::ldexp(1.0, -10))) << "the re-encoded shard differs";
  // Finished shards of another model are never mixed into this import.
  const Shell other = prefdiff(import_imagereward(stem.string() + ".h5", "--model " + quote(dir_ / "models" / "other_weights") +
                                                                          " --shard-size 2"));
  EXPECT_EQ(other.status, 1) << other.output;
  EXPECT_NE(other.output.find(first[0].string() + " is a finished shard of another import"), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("vae_id"), std::string::npos) << other.output;
  // A single-shard output is never overwritten.
  const Shell single = prefdiff(import_imagereward(dir_ / "once.h5", "--encoder placeholder --family tiny"));
  ASSERT_EQ(single.status, 0) << single.output;
  const Shell again = prefdiff(import_imagereward(dir_ / "once.h5", "--encoder placeholder --family tiny"));
  EXPECT_EQ(again.status, 1) << again.output;
  EXPECT_NE(again.output.find("already exists; an import never overwrites a shard"), std::string::npos) << again.output;
}

TEST_F(ImportEndToEnd, ModelFolderErrorsNameTheFileAndTheTensor) {
  const Shell missing = prefdiff(import_imagereward(dir_ / "m1.h5", "--model " + quote(dir_ / "models" / "missing_tensor")));
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_NE(missing.output.find("diffusion_pytorch_model.safetensors"), std::string::npos) << missing.output;
  EXPECT_NE(missing.output.find("encoder.conv_in.weight"), std::string::npos) << missing.output;
  const Shell misshaped = prefdiff(import_imagereward(dir_ / "m2.h5", "--model " + quote(dir_ / "models" / "misshaped_tensor")));
  EXPECT_EQ(misshaped.status, 1) << misshaped.output;
  EXPECT_NE(misshaped.output.find("model.safetensors"), std::string::npos) << misshaped.output;
  EXPECT_NE(misshaped.output.find("final_layer_norm.weight"), std::string::npos) << misshaped.output;
  const Shell no_folder = prefdiff(import_imagereward(dir_ / "m3.h5", "--model " + quote(dir_ / "models" / "none")));
  EXPECT_EQ(no_folder.status, 1) << no_folder.output;
  EXPECT_NE(no_folder.output.find("does not exist"), std::string::npos) << no_folder.output;
  const Shell no_encoder = prefdiff(import_imagereward(dir_ / "m4.h5", ""));
  EXPECT_EQ(no_encoder.status, 1) << no_encoder.output;
  EXPECT_NE(no_encoder.output.find("give --model DIR"), std::string::npos) << no_encoder.output;
}
