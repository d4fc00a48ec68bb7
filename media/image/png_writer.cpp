#include "image/png_writer.hpp"

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include "prefdiff/run/atomic_dir.hpp"

namespace prefdiff::image {
namespace fs = std::filesystem;

namespace {

struct WriteContext {
  std::string bytes;
  char message[256] = {0};
};

void on_error(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<WriteContext*>(png_get_error_ptr(png));
  std::strncpy(ctx->message, message, sizeof ctx->message - 1);
  png_longjmp(png, 1);
}
void on_warning(png_structp, png_const_charp) {}
void on_write(png_structp png, png_bytep data, png_size_t length) {
  static_cast<WriteContext*>(png_get_io_ptr(png))->bytes.append(reinterpret_cast<const char*>(data), length);
}
void on_flush(png_structp) {}

// UTF-8 text that is all Latin-1 -> its Latin-1 bytes (tEXt); otherwise false (iTXt).
bool utf8_to_latin1(const std::string& utf8, std::string* out) {
  out->clear();
  for (size_t i = 0; i < utf8.size(); ++i) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    if (c < 0x80) {
      out->push_back(static_cast<char>(c));
    } else if ((c == 0xC2 || c == 0xC3) && i + 1 < utf8.size()) {
      const auto c2 = static_cast<unsigned char>(utf8[++i]);
      if ((c2 & 0xC0) != 0x80) return false;
      out->push_back(static_cast<char>(((c & 0x03) << 6) | (c2 & 0x3F)));
    } else {
      return false;
    }
  }
  return true;
}

void check_keyword(const std::string& keyword) {
  bool ok = !keyword.empty() && keyword.size() <= 79 && keyword.front() != ' ' && keyword.back() != ' ' &&
            keyword.find("  ") == std::string::npos;
  for (char c : keyword) {
    const auto u = static_cast<unsigned char>(c);
    ok = ok && ((u >= 32 && u <= 126) || u >= 161);
  }
  if (!ok) {
    throw ImageError("PNG text keyword '" + keyword +
                     "' is invalid: it must have 1-79 printable Latin-1 characters without leading, trailing or "
                     "double spaces (e.g. \"parameters\").");
  }
}

// Moves `tmp` to `path` only if `path` does not exist, atomically: renameat2(RENAME_NOREPLACE), or
// link()+unlink() where the file system lacks it. A file created meanwhile by someone else is kept.
void rename_no_replace(const fs::path& tmp, const fs::path& path) {
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) return;
  int err = errno;
  if (err != EEXIST) {
    if (::link(tmp.c_str(), path.c_str()) == 0) {
      ::unlink(tmp.c_str());
      return;
    }
    err = errno;
  }
  throw ImageError("write_png: cannot create '" + path.string() + "': " + std::strerror(err) +
                   (err == EEXIST ? ". HINT: another process created it meanwhile; it is kept." : "."));
}

// The libpng calls, in a function of their own: libpng reports errors by longjmp, which must not cross
// frames holding C++ objects. False on error (message in ctx).
bool run_libpng(WriteContext* ctx, const Image& image, png_text* chunks, int num_chunks, png_const_bytep* rows,
                int compression_level) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    std::strncpy(ctx->message, "cannot allocate the encoder (out of memory?)", sizeof ctx->message - 1);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, ctx, on_write, on_flush);
  png_set_compression_level(png, compression_level);
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (num_chunks > 0) png_set_text(png, info, chunks, num_chunks);
  png_write_info(png, info);
  png_write_image(png, const_cast<png_bytepp>(rows));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace

std::string encode_png(const Image& image, const std::vector<PngTextChunk>& text, int compression_level) {
  if (image.empty()) throw ImageError("encode_png: the image is empty");
  if (image.pixels.size() != image.row_bytes() * static_cast<size_t>(image.height))
    throw ImageError("encode_png: pixel buffer size does not match " + std::to_string(image.width) + "x" +
                     std::to_string(image.height) + " RGB");
  if (compression_level < 0 || compression_level > 9)
    throw ImageError("encode_png: compression level must be 0..9, got " + std::to_string(compression_level));
  for (const PngTextChunk& chunk : text) check_keyword(chunk.keyword);
  // libpng keeps pointers to the chunk strings until png_write_info: hold them here.
  std::vector<std::string> latin1(text.size());
  std::vector<png_text> chunks(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    std::memset(&chunks[i], 0, sizeof(png_text));
    chunks[i].key = const_cast<char*>(text[i].keyword.c_str());
    if (utf8_to_latin1(text[i].text, &latin1[i])) {
      chunks[i].compression = PNG_TEXT_COMPRESSION_NONE;
      chunks[i].text = const_cast<char*>(latin1[i].c_str());
      chunks[i].text_length = latin1[i].size();
    } else {
      chunks[i].compression = PNG_ITXT_COMPRESSION_NONE;
      chunks[i].text = const_cast<char*>(text[i].text.c_str());
      chunks[i].itxt_length = text[i].text.size();
      chunks[i].lang = const_cast<char*>("");
      chunks[i].lang_key = const_cast<char*>("");
    }
  }
  std::vector<png_const_bytep> rows(static_cast<size_t>(image.height));
  for (int32_t y = 0; y < image.height; ++y) rows[static_cast<size_t>(y)] = image.row(y);

  WriteContext ctx;
  if (!run_libpng(&ctx, image, chunks.data(), static_cast<int>(chunks.size()), rows.data(), compression_level))
    throw ImageError(std::string("encode_png: libpng failed: ") + ctx.message);
  return std::move(ctx.bytes);
}

void write_png(const fs::path& path, const Image& image, const std::vector<PngTextChunk>& text,
               const PngWriteOptions& options) {
  if (!options.overwrite && fs::exists(path)) {
    throw ImageError("write_png: '" + path.string() +
                     "' already exists and is kept. HINT: choose another file name, remove the file, or ask for "
                     "overwriting explicitly.");
  }
  const std::string bytes = encode_png(image, text, options.compression_level);
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw ImageError("write_png: cannot create folder '" + dir.string() + "': " + ec.message());
  const fs::path tmp = run::temporary_sibling(path);
  try {
    run::write_file_synced(tmp, bytes);
    if (options.overwrite) {
      if (::rename(tmp.c_str(), path.c_str()) != 0)
        throw ImageError("write_png: cannot rename '" + tmp.string() + "' to '" + path.string() + "': " +
                         std::strerror(errno));
    } else {
      rename_no_replace(tmp, path);
    }
    run::fsync_path(dir);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
}

std::string a1111_parameters(std::string_view prompt, std::string_view negative_prompt,
                             const std::vector<std::pair<std::string, std::string>>& settings) {
  std::string out(prompt);
  if (!negative_prompt.empty()) out.append("\nNegative prompt: ").append(negative_prompt);
  if (!settings.empty()) {
    out.append("\n");
    for (size_t i = 0; i < settings.size(); ++i) {
      if (i) out.append(", ");
      out.append(settings[i].first).append(": ").append(settings[i].second);
    }
  }
  return out;
}

}  // namespace prefdiff::image
