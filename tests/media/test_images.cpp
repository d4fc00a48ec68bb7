// Image plumbing without Python: CLIP preprocessing against the clip_tiny golden (transformers'
// CLIPImageProcessor with PIL on real images; end to end from the WebP files too), decode errors as
// values, PNG round trips and the no-overwrite rule, grids, crops and the ordered parallel decoder.
// Pixel-exactness against Pillow itself is checked by pillow_parity.py (media_pillow_parity).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <unistd.h>

#include "image/clip_preprocess.hpp"
#include "image/decode.hpp"
#include "image/grid.hpp"
#include "image/parallel_decode.hpp"
#include "image/png_writer.hpp"
#include "image/preprocess.hpp"
#include "media_fixtures.hpp"

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using namespace prefdiff::image;
namespace t = prefdiff::testing;

namespace {

fs::path scratch_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("prefdiff_image_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Image from_hwc(const t::HostTensor& tensor) {
  Image img(static_cast<int32_t>(tensor.shape.at(1)), static_cast<int32_t>(tensor.shape.at(0)));
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(tensor.values[i]);
  return img;
}

// Worst |a - b| over a [3, H, W] slice of a golden batch.
double max_abs_diff(const std::vector<float>& ours, const t::HostTensor& ref, size_t item) {
  const size_t n = ours.size();
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(static_cast<double>(ours[i]) - ref.values[item * n + i]));
  return worst;
}

Image gradient(int32_t w, int32_t h) {
  Image img(w, h);
  for (int32_t y = 0; y < h; ++y)
    for (int32_t x = 0; x < w; ++x) {
      uint8_t* p = img.row(y) + 3 * x;
      p[0] = static_cast<uint8_t>(x * 7 + y);
      p[1] = static_cast<uint8_t>(y * 5);
      p[2] = static_cast<uint8_t>((x * y) & 0xFF);
    }
  return img;
}

}  // namespace

// README: pixel_values (PIL path) for a port of PIL's bicubic: |a - b| <= 1e-5.
TEST(ClipPreprocess, MatchesTransformersPilProcessorOnRealCrops) {
  const fs::path dir = t::golden_dir() / "clip_tiny";
  const auto golden = t::read_safetensors(dir / "preprocess.safetensors");
  const auto config = ClipImageConfig::from_model_folder(dir);
  const auto& ref = golden.at("pixel_values");
  ASSERT_EQ(ref.shape.size(), 4u);
  for (int64_t i = 0; i < ref.shape[0]; ++i) {
    const Image raw = from_hwc(golden.at("image." + std::to_string(i)));
    const std::vector<float> ours = clip_preprocess(raw, config);
    ASSERT_EQ(ours.size(), static_cast<size_t>(ref.shape[1] * ref.shape[2] * ref.shape[3]));
    const double diff = max_abs_diff(ours, ref, static_cast<size_t>(i));
    std::printf("  clip_preprocess image.%lld (%dx%d): max|a-b| %.3g (tolerance 1e-5)\n", static_cast<long long>(i),
                raw.width, raw.height, diff);
    EXPECT_LE(diff, 1e-5);
  }
}

// The image files behind inputs.safetensors' pixel_values, in order: the "images" metadata entry (a JSON list)
// where the set writes one, else 1.webp, 2.webp, ... as the set's README documents.
std::vector<std::string> golden_clip_image_names(const fs::path& inputs, int64_t count) {
  const std::string bytes = t::read_binary(inputs);
  const auto header = prefdiff::model_io::parse_safetensors_header(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), bytes.size(), inputs.string());
  std::vector<std::string> names;
  if (auto it = header.metadata.find("images"); it != header.metadata.end()) {
    names = nlohmann::json::parse(it->second).get<std::vector<std::string>>();
  } else {
    for (int64_t i = 0; i < count; ++i) names.push_back(std::to_string(i + 1) + ".webp");
  }
  EXPECT_EQ(static_cast<int64_t>(names.size()), count) << inputs << ": \"images\" metadata vs pixel_values";
  return names;
}

// inputs.safetensors pixel_values: real WebP files decoded by Pillow through the same processor with
// shortest_edge = crop = the golden's spatial size: decode + preprocess end to end.
TEST(ClipPreprocess, DecodesAndPreprocessesTheGoldenWebpInputs) {
  const fs::path inputs = t::golden_dir() / "clip_tiny" / "inputs.safetensors";
  const auto golden = t::read_safetensors(inputs);
  const auto& ref = golden.at("pixel_values");
  const std::vector<std::string> names = golden_clip_image_names(inputs, ref.shape.at(0));
  ClipImageConfig config;  // OpenAI CLIP settings, at the golden's size
  config.shortest_edge = static_cast<int32_t>(ref.shape.at(2));
  config.crop_height = static_cast<int32_t>(ref.shape.at(2));
  config.crop_width = static_cast<int32_t>(ref.shape.at(3));
  for (int64_t i = 0; i < ref.shape[0] && i < static_cast<int64_t>(names.size()); ++i) {
    const fs::path file = t::media_fixture("imagereward_images/" + names[static_cast<size_t>(i)]);
    const DecodedImage decoded = decode_image(file);
    const double diff = max_abs_diff(clip_preprocess(decoded.image, config), ref, static_cast<size_t>(i));
    std::printf("  decode + clip_preprocess %s: max|a-b| %.3g (tolerance 1e-5)\n", file.filename().c_str(), diff);
    EXPECT_LE(diff, 1e-5);
  }
}

TEST(ClipPreprocess, ConfigErrorsNameFileAndKey) {
  fs::path dir = scratch_dir("clipcfg");
  std::ofstream(dir / "preprocessor_config.json") << R"({"size": {"shortest_edge": 224}, "resample": 1})";
  try {
    ClipImageConfig::from_model_folder(dir);
    FAIL() << "no error";
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("preprocessor_config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"resample\""), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Decode, ProblemsAreCountableValuesNamingTheFile) {
  fs::path dir = scratch_dir("errors");
  std::ofstream(dir / "notes.jpg") << "this is a text file, not a JPEG\n";
  std::ofstream(dir / "empty.png");
  const std::string webp = t::read_binary(t::media_fixture("imagereward_images/1.webp"));
  std::ofstream(dir / "cut.webp", std::ios::binary) << webp.substr(0, webp.size() / 2);
  const std::vector<std::pair<std::string, DecodeErrorKind>> expect = {
      {"missing.jpg", DecodeErrorKind::missing},
      {"notes.jpg", DecodeErrorKind::not_an_image},
      {"empty.png", DecodeErrorKind::truncated},
      {"cut.webp", DecodeErrorKind::truncated},
  };
  for (const auto& [name, kind] : expect) {
    DecodeResult r = try_decode_image(dir / name);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error.kind, kind) << name << ": " << r.error.message;
    EXPECT_EQ(r.error.source, (dir / name).string());
    EXPECT_NE(r.error.message.find((dir / name).string()), std::string::npos) << r.error.message;
  }
  EXPECT_THROW(decode_image(dir / "notes.jpg"), DecodeFailure);
  fs::remove_all(dir);
}

TEST(Decode, RealWebpHasItsSizeAndMode) {
  const DecodedImage d = decode_image(t::media_fixture("imagereward_images/1.webp"));
  EXPECT_EQ(d.format, ImageFormat::webp);
  EXPECT_EQ(d.image.width, 512);
  EXPECT_EQ(d.image.height, 512);
  EXPECT_EQ(d.source_mode, "RGB");
}

TEST(PngWriter, RoundTripsPixelsAndRefusesToOverwrite) {
  fs::path dir = scratch_dir("png");
  const Image img = gradient(37, 23);
  const fs::path out = dir / "sub" / "a.png";
  write_png(out, img, {{"parameters", "a cat\nSteps: 30"}});
  const DecodedImage back = decode_image(out);
  EXPECT_EQ(back.image.width, img.width);
  EXPECT_EQ(back.image.height, img.height);
  EXPECT_EQ(back.image.pixels, img.pixels);
  const auto size_before = fs::file_size(out);
  EXPECT_THROW(write_png(out, gradient(5, 5)), ImageError);
  EXPECT_EQ(fs::file_size(out), size_before);  // the existing file is untouched
  PngWriteOptions overwrite;
  overwrite.overwrite = true;
  write_png(out, gradient(5, 5), {}, overwrite);
  EXPECT_EQ(decode_image(out).image.width, 5);
  for (const auto& entry : fs::directory_iterator(dir / "sub"))  // no temporaries left behind
    EXPECT_EQ(entry.path().filename(), "a.png");
  EXPECT_THROW(encode_png(img, {{"bad  keyword", "x"}}), ImageError);
  fs::remove_all(dir);
}

TEST(PngWriter, A1111ParametersLayout) {
  EXPECT_EQ(a1111_parameters("a cat", "blurry", {{"Steps", "30"}, {"Seed", "1"}}),
            "a cat\nNegative prompt: blurry\nSteps: 30, Seed: 1");
  EXPECT_EQ(a1111_parameters("a cat", "", {{"Steps", "30"}}), "a cat\nSteps: 30");
}

TEST(Grid, PlacesImagesRowByRow) {
  std::vector<Image> images;
  for (int i = 0; i < 5; ++i) images.emplace_back(4, 3, static_cast<uint8_t>(10 * (i + 1)), 0, 0);
  GridOptions options;
  options.columns = 2;
  options.padding = 1;
  options.background = {255, 255, 255};
  const Image grid = make_grid(images, options);
  EXPECT_EQ(grid.width, 2 * 4 + 3);
  EXPECT_EQ(grid.height, 3 * 3 + 4);
  auto at = [&](int x, int y) { return grid.row(y)[3 * x]; };
  EXPECT_EQ(at(0, 0), 255);                 // border
  EXPECT_EQ(at(1, 1), 10);                  // image 0
  EXPECT_EQ(at(1 + 4 + 1, 1), 20);          // image 1, right of it
  EXPECT_EQ(at(1, 1 + 3 + 1), 30);          // image 2, next row
  EXPECT_EQ(at(1, 1 + 2 * 4), 50);          // image 4, third row
  EXPECT_EQ(at(1 + 4 + 1, 1 + 2 * 4), 255); // empty cell
  images.emplace_back(5, 3);
  EXPECT_THROW(make_grid(images, options), ImageError);
}

TEST(Preprocess, CropsFollowTorchvision) {
  // torchvision: int(round((W - w) / 2.0)), Python rounds halves to even.
  EXPECT_EQ(center_crop_box(517, 512, 512, 512).left, 2);  // 2.5 -> 2
  EXPECT_EQ(center_crop_box(519, 512, 512, 512).left, 4);  // 3.5 -> 4
  EXPECT_EQ(center_crop_box(512, 514, 512, 512).top, 1);
  const CropBox a = random_crop_box(7, 600, 512, 512, 512), b = random_crop_box(7, 600, 512, 512, 512);
  EXPECT_EQ(a.left, b.left);
  EXPECT_EQ(a.top, 0);
  std::set<int32_t> lefts;
  for (uint64_t s = 0; s < 200; ++s) lefts.insert(random_crop_box(s, 600, 512, 512, 512).left);
  EXPECT_GT(lefts.size(), 50u);  // spread over the 89 positions
  EXPECT_THROW(center_crop_box(100, 100, 128, 128), ImageError);
}

TEST(Preprocess, TrainingImageRecordsSdxlTimeIds) {
  const Image img = gradient(300, 200);
  TrainingPreprocessOptions options;
  options.resolution = 128;
  options.random_flip = false;
  const TrainingImage ti = preprocess_for_training(img, options, 1);
  EXPECT_EQ(ti.size, 128);
  EXPECT_EQ(ti.pixels.size(), 3u * 128 * 128);
  // 300x200 -> 192x128, centre crop left = round(64 / 2) = 32.
  const std::array<float, 6> ids = ti.time_ids.as_array();
  const std::array<float, 6> expect = {200, 300, 0, 32, 128, 128};
  for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(ids[i], expect[i]);
  for (float v : ti.pixels) EXPECT_TRUE(v >= -1.0f && v <= 1.0f);
  // ToTensor + Normalize(0.5, 0.5): 0 -> -1, 255 -> 1 exactly.
  const std::vector<float> f = to_float_chw_minus1_1(Image(1, 1, 0, 255, 128));
  EXPECT_EQ(f[0], -1.0f);
  EXPECT_EQ(f[1], 1.0f);
  EXPECT_FLOAT_EQ(f[2], (128.0f / 255.0f - 0.5f) / 0.5f);
  // The flip is a function of the seed: both outcomes occur, each reproducibly.
  options.random_flip = true;
  int flips = 0;
  for (uint64_t s = 0; s < 64; ++s) {
    const bool f1 = preprocess_for_training(img, options, s).flipped;
    EXPECT_EQ(f1, preprocess_for_training(img, options, s).flipped);
    flips += f1;
  }
  EXPECT_GT(flips, 10);
  EXPECT_LT(flips, 54);
}

TEST(ParallelDecode, ResultsComeBackInInputOrder) {
  fs::path dir = scratch_dir("parallel");
  std::vector<fs::path> paths;
  for (int i = 0; i < 24; ++i) {
    fs::path p = dir / ("img" + std::to_string(i) + ".png");
    if (i % 5 == 3) {
      std::ofstream(p) << "broken";
    } else {
      write_png(p, Image(i + 1, 2, static_cast<uint8_t>(i), 0, 0));
    }
    paths.push_back(p);
  }
  const std::vector<DecodeResult> results = decode_images(paths, 3);
  ASSERT_EQ(results.size(), paths.size());
  for (int i = 0; i < 24; ++i) {
    const DecodeResult& r = results[static_cast<size_t>(i)];
    if (i % 5 == 3) {
      EXPECT_FALSE(r.ok());
      EXPECT_EQ(r.error.source, paths[static_cast<size_t>(i)].string());
    } else {
      ASSERT_TRUE(r.ok()) << r.error.message;
      EXPECT_EQ(r.image->image.width, i + 1);
      EXPECT_EQ(r.image->image.pixels[0], i);
    }
  }
  // Consumer order and bounded look-ahead with a generic work function.
  std::atomic<int> in_flight{0}, worst{0};
  std::vector<size_t> order;
  for_each_in_order<int>(
      100, 4,
      [&](size_t i) {
        const int now = ++in_flight;
        int w = worst.load();
        while (now > w && !worst.compare_exchange_weak(w, now)) {}
        --in_flight;
        return static_cast<int>(i * i);
      },
      [&](size_t i, int&& v) {
        EXPECT_EQ(v, static_cast<int>(i * i));
        order.push_back(i);
      },
      8);
  ASSERT_EQ(order.size(), 100u);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);
  EXPECT_LE(worst.load(), 4);
  EXPECT_THROW(for_each_in_order<int>(
                   10, 2, [](size_t i) -> int { if (i == 6) throw std::runtime_error("boom"); return 0; },
                   [](size_t, int&&) {}),
               std::runtime_error);
  fs::remove_all(dir);
}
