#include "image/clip_preprocess.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

namespace prefdiff::image {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void bad_key(const fs::path& path, const std::string& key, const std::string& why) {
  throw ImageError("CLIP preprocessor config '" + path.string() + "': \"" + key + "\" " + why +
                   ". HINT: compare with the model's original preprocessor_config.json.");
}

int32_t positive_int(const json& v, const fs::path& path, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > 1 << 16)
    bad_key(path, key, "must be a positive integer, got " + v.dump());
  return v.get<int32_t>();
}

bool flag(const json& v, const fs::path& path, const std::string& key) {
  if (!v.is_boolean()) bad_key(path, key, "must be true or false, got " + v.dump());
  return v.get<bool>();
}

std::array<float, 3> triple(const json& v, const fs::path& path, const std::string& key) {
  if (v.is_number()) {
    const float x = v.get<float>();
    return {x, x, x};
  }
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number())
    bad_key(path, key, "must be a number or a list of 3 numbers, got " + v.dump());
  // numpy converts the Python floats to the image's float32 dtype.
  return {v[0].get<float>(), v[1].get<float>(), v[2].get<float>()};
}

// transformers.image_transforms.center_crop on an HWC uint8 image, including its zero padding.
Image transformers_center_crop(const Image& in, int32_t crop_h, int32_t crop_w) {
  auto floor_div2 = [](int32_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  int32_t top = floor_div2(in.height - crop_h), left = floor_div2(in.width - crop_w);
  int32_t top_pad = 0, left_pad = 0;
  if (!(top >= 0 && top + crop_h <= in.height && left >= 0 && left + crop_w <= in.width)) {
    const int32_t new_h = std::max(crop_h, in.height), new_w = std::max(crop_w, in.width);
    top_pad = (new_h - in.height + 1) / 2;  // ceil
    left_pad = (new_w - in.width + 1) / 2;
    top += top_pad;
    left += left_pad;
  }
  Image out(crop_w, crop_h);
  for (int32_t y = 0; y < crop_h; ++y) {
    const int32_t sy = top + y - top_pad;
    if (sy < 0 || sy >= in.height) continue;
    for (int32_t x = 0; x < crop_w; ++x) {
      const int32_t sx = left + x - left_pad;
      if (sx < 0 || sx >= in.width) continue;
      const uint8_t* s = in.row(sy) + 3 * sx;
      uint8_t* d = out.row(y) + 3 * x;
      d[0] = s[0];
      d[1] = s[1];
      d[2] = s[2];
    }
  }
  return out;
}

}  // namespace

ClipImageConfig ClipImageConfig::from_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    throw ImageError("CLIP preprocessor config '" + path.string() + "' cannot be read" +
                     (fs::exists(path) ? " (permissions?)" : " (no such file)") +
                     ". HINT: it is preprocessor_config.json in the scorer's model folder.");
  }
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw ImageError("CLIP preprocessor config '" + path.string() + "' is not valid JSON: " + e.what() +
                     ". HINT: copy it again from the model folder.");
  }
  if (!j.is_object()) throw ImageError("CLIP preprocessor config '" + path.string() + "' is not a JSON object.");
  ClipImageConfig c;
  if (j.contains("do_resize")) c.do_resize = flag(j["do_resize"], path, "do_resize");
  if (j.contains("size")) {
    const json& s = j["size"];
    if (s.is_number()) {
      c.shortest_edge = positive_int(s, path, "size");
    } else if (s.is_object() && s.contains("shortest_edge")) {
      c.shortest_edge = positive_int(s["shortest_edge"], path, "size.shortest_edge");
    } else if (s.is_object() && s.contains("height") && s.contains("width")) {
      c.resize_height = positive_int(s["height"], path, "size.height");
      c.resize_width = positive_int(s["width"], path, "size.width");
    } else {
      bad_key(path, "size", "must be a number, {\"shortest_edge\": n} or {\"height\": h, \"width\": w}, got " + s.dump());
    }
  }
  if (j.contains("resample")) {
    const json& r = j["resample"];
    if (!r.is_number_integer() || (r.get<int>() != 2 && r.get<int>() != 3))
      bad_key(path, "resample", "must be 2 (BILINEAR) or 3 (BICUBIC), the filters implemented; got " + r.dump());
    c.resample = r.get<int>() == 2 ? ResampleFilter::bilinear : ResampleFilter::bicubic;
  }
  if (j.contains("do_center_crop")) c.do_center_crop = flag(j["do_center_crop"], path, "do_center_crop");
  if (j.contains("crop_size")) {
    const json& s = j["crop_size"];
    if (s.is_number()) {
      c.crop_height = c.crop_width = positive_int(s, path, "crop_size");
    } else if (s.is_object() && s.contains("height") && s.contains("width")) {
      c.crop_height = positive_int(s["height"], path, "crop_size.height");
      c.crop_width = positive_int(s["width"], path, "crop_size.width");
    } else {
      bad_key(path, "crop_size", "must be a number or {\"height\": h, \"width\": w}, got " + s.dump());
    }
  }
  if (j.contains("do_rescale")) c.do_rescale = flag(j["do_rescale"], path, "do_rescale");
  if (j.contains("rescale_factor")) {
    if (!j["rescale_factor"].is_number()) bad_key(path, "rescale_factor", "must be a number");
    c.rescale_factor = j["rescale_factor"].get<double>();
  }
  if (j.contains("do_normalize")) c.do_normalize = flag(j["do_normalize"], path, "do_normalize");
  if (j.contains("image_mean")) c.mean = triple(j["image_mean"], path, "image_mean");
  if (j.contains("image_std")) {
    c.std = triple(j["image_std"], path, "image_std");
    for (float s : c.std)
      if (!(s != 0.0f)) bad_key(path, "image_std", "must not contain 0");
  }
  return c;
}

ClipImageConfig ClipImageConfig::from_model_folder(const fs::path& folder) {
  const fs::path path = folder / "preprocessor_config.json";
  return fs::exists(path) ? from_json_file(path) : ClipImageConfig{};
}

int32_t ClipImageConfig::output_height() const { return do_center_crop ? crop_height : 0; }
int32_t ClipImageConfig::output_width() const { return do_center_crop ? crop_width : 0; }

std::vector<float> clip_preprocess(const Image& image, const ClipImageConfig& config) {
  if (image.empty()) throw ImageError("clip_preprocess: the input image is empty");
  Image work = image;
  if (config.do_resize) {
    work = config.resize_height > 0 ? resize(work, config.resize_width, config.resize_height, config.resample)
                                    : resize_short_side(work, config.shortest_edge, config.resample);
  }
  if (config.do_center_crop) work = transformers_center_crop(work, config.crop_height, config.crop_width);
  const size_t plane = static_cast<size_t>(work.width) * static_cast<size_t>(work.height);
  std::vector<float> out(plane * 3);
  for (int c = 0; c < 3; ++c) {
    // Per channel, the 256 possible outputs in transformers' order of operations.
    float table[256];
    for (int v = 0; v < 256; ++v) {
      float x = config.do_rescale ? static_cast<float>(static_cast<double>(v) * config.rescale_factor)
                                  : static_cast<float>(v);
      if (config.do_normalize) x = (x - config.mean[static_cast<size_t>(c)]) / config.std[static_cast<size_t>(c)];
      table[v] = x;
    }
    float* dst = out.data() + static_cast<size_t>(c) * plane;
    const uint8_t* src = work.pixels.data() + c;
    for (size_t i = 0; i < plane; ++i) dst[i] = table[src[3 * i]];
  }
  return out;
}

}  // namespace prefdiff::image
