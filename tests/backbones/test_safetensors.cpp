// safetensors reader/writer and diffusers folders: round trips, the spec's byte layout, hostile headers,
// shards, variants and strict state-dict loading.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "common/golden.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/model_io/safetensors.hpp"

using namespace prefdiff::model_io;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("prefdiff_st_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& p, const std::string& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s;
}

// A file image with the given header JSON and `data` bytes.
std::string image(const std::string& json, const std::string& data) { return le64(json.size()) + json + data; }

// Parses an in-memory image; returns the error message ("" when it parsed).
std::string parse_error(const std::string& img) {
  try {
    parse_safetensors_header(reinterpret_cast<const uint8_t*>(img.data()), img.size(), img.size(), "mem");
    return "";
  } catch (const ModelIoError& e) {
    return e.what();
  }
}

}  // namespace

TEST(Safetensors, ParsesTheSpecMinimalExample) {
  std::string json = R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";
  ASSERT_EQ(json.size(), 60u);
  std::string data(16, '\0');
  for (int i = 0; i < 4; ++i) data[4 * i] = static_cast<char>(i + 1);
  fs::path p = temp_dir("minimal") / "m.safetensors";
  write_bytes(p, image(json, data));
  auto f = SafetensorsFile::open(p);
  ASSERT_EQ(f.names(), std::vector<std::string>{"test"});
  at::Tensor t = f.load("test");
  EXPECT_EQ(t.scalar_type(), at::kInt);
  EXPECT_TRUE(at::equal(t, at::tensor({1, 2, 3, 4}, at::kInt).reshape({2, 2})));
}

TEST(Safetensors, WriteReadRoundTripIsBitExactForEveryDtype) {
  at::manual_seed(0);
  NamedTensors in = {
      {"f32", at::randn({3, 5})},
      {"f16", at::randn({7}).to(at::kHalf)},
      {"bf16", at::randn({2, 3, 4}).to(at::kBFloat16)},
      {"f64", at::randn({4}, at::kDouble)},
      {"i64", at::arange(10, at::kLong)},
      {"flag", at::tensor({1, 0, 1}, at::kInt).to(at::kBool)},
      {"scalar", at::scalar_tensor(3.5)},
      {"empty", at::empty({0, 4})},
      {"strided", at::randn({6, 4}).t()},  // non-contiguous input
      {"weird \"name\"\n", at::ones({1})},
  };
  fs::path p = temp_dir("roundtrip") / "r.safetensors";
  write_safetensors(p, in, {{"format", "pt"}, {"note", "x"}});
  std::string raw = bytes_of(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u) << "header must be padded to 8 bytes";
  EXPECT_EQ(raw.substr(8, 15), "{\"__metadata__\"") << "metadata comes first";

  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f.header().metadata.at("note"), "x");
  // Larger dtypes first: every 8-byte tensor precedes every smaller one, so all data is aligned.
  auto names = f.names();
  EXPECT_TRUE(names[0] == "f64" || names[0] == "i64");
  for (const auto& [name, t] : in) {
    at::Tensor r = f.load(name);
    ASSERT_EQ(r.scalar_type(), t.scalar_type()) << name;
    ASSERT_EQ(r.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(r, t.contiguous())) << name;
  }
  // Conversion on load.
  EXPECT_TRUE(at::equal(f.load("f16", at::kFloat), in[1].second.to(at::kFloat)));
  // Views keep the mapping alive after the file object is gone.
  at::Tensor v;
  {
    auto g = SafetensorsFile::open(p);
    v = g.view("f32");
  }
  EXPECT_TRUE(at::equal(v, in[0].second));
}

TEST(Safetensors, RejectsDuplicateNamesOnWrite) {
  fs::path p = temp_dir("dupw") / "d.safetensors";
  EXPECT_THROW(write_safetensors(p, {{"a", at::ones({1})}, {"a", at::ones({1})}}), ModelIoError);
}

TEST(Safetensors, ReadsUnalignedDataFromOtherWriters) {
  // 3-byte header padding pushes the F32 buffer off 4-byte alignment.
  std::string json = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   )";
  ASSERT_NE((8 + json.size()) % 4, 0u);
  float vals[2] = {1.5f, -2.25f};
  std::string data(reinterpret_cast<const char*>(vals), 8);
  fs::path p = temp_dir("unaligned") / "u.safetensors";
  write_bytes(p, image(json, data));
  at::Tensor t = SafetensorsFile::open(p).load("x");
  EXPECT_EQ(t[0].item<float>(), 1.5f);
  EXPECT_EQ(t[1].item<float>(), -2.25f);
}

TEST(Safetensors, HostileHeadersAreErrorsNotCrashes) {
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string d8(8, '\0');
  ASSERT_EQ(parse_error(image(ok, d8)), "");

  struct Case {
    const char* what;
    std::string img;
    const char* needle;
  };
  std::string deep(200000, '[');
  std::vector<Case> cases = {
      {"empty file", "", "shorter than"},
      {"huge length", le64(UINT64_MAX) + ok, "exceeds the limit"},
      {"length past EOF", le64(5000) + ok, "past the end"},
      {"not an object", image(R"(["a"])", ""), "does not start with '{'"},
      {"garbage", image("{xx", ""), "invalid JSON"},
      {"trailing garbage", image(ok + "x", d8), "invalid"},
      {"deep nesting", image("{\"a\":" + deep, ""), "unexpected array"},
      {"overlap", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8), "gap or overlap"},
      {"gap", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8), "gap or overlap"},
      {"out of file", image(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8), "data buffer has 8"},
      {"trailing bytes", image(ok, d8 + "xx"), "data buffer has 10"},
      {"size mismatch", image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8), "need 12"},
      {"end < begin", image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d8), "end < begin"},
      {"shape overflow", image(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8), "overflows"},
      {"huge offsets", image(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[18446744073709551607,18446744073709551615]}})", d8), "gap or overlap"},
      {"negative dim", image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8), "negative"},
      {"float dim", image(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8), "non-integer"},
      {"unknown dtype", image(R"({"a":{"dtype":"F128","shape":[2],"data_offsets":[0,8]}})", d8), "unknown dtype"},
      {"duplicate name", image(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8), "duplicate tensor name 'a'"},
      {"missing field", image(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", d8), "lacks"},
      {"three offsets", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", d8), "exactly 2"},
      {"extra field", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", d8), "unknown field 'x'"},
      {"non-string metadata", image(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d8), "unexpected number"},
      {"sub-byte size", image(R"({"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})", std::string(1, '\0')), "not whole bytes"},
  };
  for (const auto& c : cases) {
    std::string err = parse_error(c.img);
    EXPECT_NE(err.find(c.needle), std::string::npos) << c.what << ": got \"" << err << "\"";
  }
}

TEST(Safetensors, RandomMutationsNeverCrash) {
  // A cheap in-suite complement to the libFuzzer target: byte flips of a valid image must parse or throw.
  fs::path p = temp_dir("mut") / "m.safetensors";
  write_safetensors(p, {{"w", at::randn({3, 3})}, {"b", at::randn({3}).to(at::kHalf)}});
  std::string base = bytes_of(p);
  std::mt19937 rng(1234);
  for (int i = 0; i < 3000; ++i) {
    std::string img = base;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) img[rng() % img.size()] = static_cast<char>(rng());
    if (rng() % 8 == 0) img.resize(rng() % img.size());
    parse_error(img);  // must return, whatever the outcome
  }
}

TEST(Safetensors, ReadsEveryGoldenFile) {
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(prefdiff::testing::golden_dir())) {
    if (e.path().extension() != ".safetensors") continue;
    auto f = SafetensorsFile::open(e.path());
    for (const auto& n : f.names()) ASSERT_TRUE(f.load(n).defined()) << e.path() << " " << n;
    ++files;
  }
  EXPECT_GE(files, 10);
}

TEST(DiffusersFolder, VariantAndIndexNames) {
  EXPECT_EQ(weights_file_name(""), "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(weights_file_name("fp16"), "diffusion_pytorch_model.fp16.safetensors");
  EXPECT_EQ(weights_index_name("fp16"), "diffusion_pytorch_model.safetensors.index.fp16.json");
}

TEST(DiffusersFolder, ShardedSaveLoadsBackExactly) {
  fs::path dir = temp_dir("shards");
  NamedTensors t;
  for (int i = 0; i < 5; ++i) t.emplace_back("layer." + std::to_string(i) + ".weight", at::randn({16, 16}));
  SaveOptions so;
  so.max_shard_bytes = 2 * 16 * 16 * 4;  // two tensors per shard -> 3 shards
  save_model_folder(dir, {{"a", 1}}, t, so);
  EXPECT_TRUE(fs::exists(dir / "diffusion_pytorch_model-00001-of-00003.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "diffusion_pytorch_model-00003-of-00003.safetensors"));
  auto index = read_json_file(dir / "diffusion_pytorch_model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 5u * 16 * 16 * 4);
  EXPECT_EQ(index["weight_map"]["layer.4.weight"], "diffusion_pytorch_model-00003-of-00003.safetensors");

  auto reader = CheckpointReader::open(dir);
  NamedTensors dst;
  for (auto& [n, x] : t) dst.emplace_back(n, at::zeros_like(x));
  load_state_dict(dst, reader, "test");
  for (size_t i = 0; i < t.size(); ++i) EXPECT_TRUE(at::equal(dst[i].second, t[i].second));

  // A second, unsharded save of the same variant removes the stale shards.
  save_model_folder(dir, {{"a", 1}}, t, {});
  EXPECT_FALSE(fs::exists(dir / "diffusion_pytorch_model-00001-of-00003.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "diffusion_pytorch_model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "diffusion_pytorch_model.safetensors"));
}

TEST(DiffusersFolder, VariantsConvertToTheModelDtype) {
  fs::path dir = temp_dir("variant");
  at::Tensor w = at::randn({8, 4});
  SaveOptions so;
  so.variant = "fp16";
  save_model_folder(dir, {}, {{"w", w.to(at::kHalf)}}, so);
  ASSERT_TRUE(fs::exists(dir / "diffusion_pytorch_model.fp16.safetensors"));
  // No plain weights: the error names the file and hints at the variant.
  try {
    CheckpointReader::open(dir);
    FAIL() << "expected an error";
  } catch (const ModelIoError& e) {
    EXPECT_NE(std::string(e.what()).find("variant \"fp16\""), std::string::npos) << e.what();
  }
  NamedTensors dst = {{"w", at::zeros({8, 4})}};
  load_state_dict(dst, CheckpointReader::open(dir, "fp16"), "test");
  EXPECT_TRUE(at::equal(dst[0].second, w.to(at::kHalf).to(at::kFloat)));
  // BF16 too.
  save_model_folder(dir, {}, {{"w", w.to(at::kBFloat16)}}, {});
  load_state_dict(dst, CheckpointReader::open(dir), "test");
  EXPECT_TRUE(at::equal(dst[0].second, w.to(at::kBFloat16).to(at::kFloat)));
}

TEST(DiffusersFolder, StrictLoadNamesEveryProblemAndChangesNothing) {
  fs::path dir = temp_dir("strict");
  save_model_folder(dir, {}, {{"a", at::ones({2, 2})}, {"b", at::ones({3})}, {"extra", at::ones({1})}}, {});
  NamedTensors dst = {{"a", at::zeros({2, 2})}, {"b", at::zeros({4})}, {"c", at::zeros({1})}};
  try {
    load_state_dict(dst, CheckpointReader::open(dir), "the test model");
    FAIL() << "expected an error";
  } catch (const ModelIoError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("3 problem(s)"), std::string::npos) << m;
    EXPECT_NE(m.find("missing tensor 'c'"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected tensor 'extra'"), std::string::npos) << m;
    EXPECT_NE(m.find("tensor 'b' has shape [3]"), std::string::npos) << m;
    EXPECT_NE(m.find("expects [4]"), std::string::npos) << m;
    EXPECT_NE(m.find("HINT"), std::string::npos) << m;
  }
  EXPECT_EQ(dst[0].second.sum().item<float>(), 0.0f) << "a failed load must not modify anything";
}

TEST(DiffusersFolder, IndexPointingAtTheWrongShardIsAnError) {
  fs::path dir = temp_dir("badindex");
  write_safetensors(dir / "s1.safetensors", {{"a", at::ones({1})}});
  std::ofstream(dir / "diffusion_pytorch_model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"b":"s1.safetensors"}})";
  EXPECT_THROW(CheckpointReader::open(dir), ModelIoError);
  std::ofstream(dir / "diffusion_pytorch_model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"a":"../s1.safetensors"}})";
  EXPECT_THROW(CheckpointReader::open(dir), ModelIoError);
}

TEST(DiffusersFolder, ResolvesPipelineRootsAndBareFolders) {
  fs::path root = temp_dir("resolve");
  fs::create_directories(root / "unet");
  std::ofstream(root / "unet" / "config.json") << "{}";
  EXPECT_EQ(resolve_model_dir(root), root / "unet");
  EXPECT_EQ(resolve_model_dir(root / "unet"), root / "unet");
  EXPECT_THROW(resolve_model_dir(root / "nothing"), ModelIoError);
}
