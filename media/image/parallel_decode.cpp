#include "image/parallel_decode.hpp"

namespace prefdiff::image {

std::vector<DecodeResult> decode_images(const std::vector<std::filesystem::path>& paths, int threads,
                                        const DecodeOptions& options) {
  std::vector<DecodeResult> results(paths.size());
  for_each_in_order<DecodeResult>(
      paths.size(), threads, [&](size_t i) { return try_decode_image(paths[i], options); },
      [&](size_t i, DecodeResult&& r) { results[i] = std::move(r); }, paths.size());
  return results;
}

}  // namespace prefdiff::image
