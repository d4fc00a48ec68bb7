// Command-line access to the media libraries for pillow_parity.py (checked against Pillow, transformers
// and ftfy in Python) and bench/media_preprocess.py. Results go to files; a JSON line on stdout says what
// happened.
//   media_tool decode <image> <out.rgb>
//   media_tool resize <image> <width> <height> bilinear|bicubic <out.rgb>
//   media_tool train <image> <resolution> <out.f32>            (centre crop, no flip)
//   media_tool clip <image> <preprocessor_config.json|-> <out.f32>
//   media_tool clean-text                                      (stdin: JSON list of strings)
//   media_tool write-png <out.png> <in.rgb> <width> <height> <chunks.json> [overwrite]
//   media_tool bench <image> <resolution> <repeats>            (decode + training preprocess, seconds)
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "image/clip_preprocess.hpp"
#include "image/decode.hpp"
#include "image/png_writer.hpp"
#include "image/preprocess.hpp"
#include "image/resample.hpp"
#include "tokenizer/text_cleanup.hpp"

using namespace prefdiff::image;
using nlohmann::json;

namespace {

void write_bytes(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw std::runtime_error("cannot write " + path);
}

json describe(const DecodedImage& d) {
  return {{"ok", true}, {"width", d.image.width}, {"height", d.image.height}, {"format", format_name(d.format)},
          {"mode", d.source_mode}, {"bit_depth", d.bit_depth}, {"orientation", d.exif_orientation}};
}

int usage() {
  std::cerr << "usage: media_tool decode|resize|train|clip|clean-text|write-png|bench ... (see media_tool.cpp)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string cmd = argv[1];
  try {
    if (cmd == "decode" && argc == 4) {
      DecodeResult r = try_decode_image(argv[2]);
      if (!r.ok()) {
        std::cout << json{{"ok", false}, {"kind", error_kind_name(r.error.kind)}, {"message", r.error.message}} << "\n";
        return 0;
      }
      write_bytes(argv[3], r.image->image.pixels.data(), r.image->image.pixels.size());
      std::cout << describe(*r.image) << "\n";
    } else if (cmd == "resize" && argc == 7) {
      const DecodedImage d = decode_image(argv[2]);
      const ResampleFilter f = std::string(argv[5]) == "bicubic" ? ResampleFilter::bicubic : ResampleFilter::bilinear;
      const Image out = resize(d.image, std::stoi(argv[3]), std::stoi(argv[4]), f);
      write_bytes(argv[6], out.pixels.data(), out.pixels.size());
      std::cout << json{{"ok", true}, {"width", out.width}, {"height", out.height}} << "\n";
    } else if (cmd == "train" && argc == 5) {
      const DecodedImage d = decode_image(argv[2]);
      TrainingPreprocessOptions options;
      options.resolution = std::stoi(argv[3]);
      options.random_flip = false;
      const TrainingImage t = preprocess_for_training(d.image, options, 0);
      write_bytes(argv[4], t.pixels.data(), t.pixels.size() * sizeof(float));
      std::cout << json{{"ok", true}, {"size", t.size}, {"time_ids", t.time_ids.as_array()}} << "\n";
    } else if (cmd == "clip" && argc == 5) {
      const DecodedImage d = decode_image(argv[2]);
      const ClipImageConfig config =
          std::string(argv[3]) == "-" ? ClipImageConfig{} : ClipImageConfig::from_json_file(argv[3]);
      const std::vector<float> v = clip_preprocess(d.image, config);
      write_bytes(argv[4], v.data(), v.size() * sizeof(float));
      std::cout << json{{"ok", true}, {"values", v.size()}} << "\n";
    } else if (cmd == "clean-text" && argc == 2) {
      const json in = json::parse(std::cin);
      json out = json::array();
      for (const auto& s : in) out.push_back(prefdiff::tokenizer::clip_clean_text(s.get<std::string>()));
      std::cout << out.dump() << "\n";
    } else if (cmd == "write-png" && (argc == 7 || argc == 8)) {
      std::ifstream in(argv[3], std::ios::binary);
      Image img;
      img.width = std::stoi(argv[4]);
      img.height = std::stoi(argv[5]);
      img.pixels.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      std::ifstream chunks_file(argv[6]);
      std::vector<PngTextChunk> chunks;
      for (const auto& c : json::parse(chunks_file))
        chunks.push_back({c.at(0).get<std::string>(), c.at(1).get<std::string>()});
      PngWriteOptions options;
      options.overwrite = argc == 8 && std::string(argv[7]) == "overwrite";
      write_png(argv[2], img, chunks, options);
      std::cout << json{{"ok", true}} << "\n";
    } else if (cmd == "bench" && argc == 5) {
      const std::string path = argv[2];
      TrainingPreprocessOptions options;
      options.resolution = std::stoi(argv[3]);
      options.random_flip = false;
      const int repeats = std::stoi(argv[4]);
      std::ifstream in(path, std::ios::binary);
      const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      json times = json::array();
      double checksum = 0;
      for (int i = 0; i < repeats; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        const DecodedImage d = decode_image_bytes(bytes.data(), bytes.size(), path);
        const TrainingImage t = preprocess_for_training(d.image, options, 0);
        const auto t1 = std::chrono::steady_clock::now();
        checksum += t.pixels[t.pixels.size() / 2];
        times.push_back(std::chrono::duration<double>(t1 - t0).count());
      }
      std::cout << json{{"ok", true}, {"seconds", times}, {"checksum", checksum}} << "\n";
    } else {
      return usage();
    }
  } catch (const std::exception& e) {
    std::cout << json{{"ok", false}, {"kind", "exception"}, {"message", e.what()}} << "\n";
    return 1;
  }
  return 0;
}
