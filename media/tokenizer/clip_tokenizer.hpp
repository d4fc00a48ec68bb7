#pragma once
// The CLIP BPE tokenizer of Stable Diffusion's text encoders, matching transformers 4.x's slow
// CLIPTokenizer with ftfy installed (what the released SD1.5/SDXL pipelines ran):
//   1. the caption is split at added tokens (BOS, EOS, UNK, PAD and any added_tokens_decoder entry);
//   2. every other piece is cleaned (text_cleanup.hpp: ftfy.fix_text, whitespace collapse, lower case);
//   3. the CLIP pattern splits it into words (Unicode letters, single digits, punctuation runs,
//      English contractions, literal <|startoftext|>/<|endoftext|>);
//   4. each word's UTF-8 bytes are mapped to printable characters and merged by byte-level BPE (cached);
//   5. BOS + ids + EOS; optionally truncated (BOS + first max_length-2 ids + EOS) and padded.
// SDXL's tokenizer_2 pads with "!" (id 0). As in transformers, a pad token that is not BOS/EOS/UNK becomes
// an added token, so every "!" in a caption is split off and encoded as id 0 there, not by BPE.
//
// Thread-safe: encode() may be called from several threads (the BPE cache is locked).

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace prefdiff::tokenizer {

// Every error of loading a tokenizer folder; what() names the file and ends with a HINT.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ClipTokenizerOptions {
  // Overrides the folder's pad token (SDXL tokenizer_2 is "!"; empty: the folder's own setting).
  std::string pad_token;
  // Overrides model_max_length (0: tokenizer_config.json's, else 77).
  int32_t model_max_length = 0;
};

struct EncodedText {
  std::vector<int32_t> ids;             // BOS + token ids + EOS, then padding if asked
  std::vector<int32_t> attention_mask;  // 1 for BOS..EOS, 0 for padding; same length as ids
  int32_t length = 0;                   // BOS + tokens + EOS before any truncation
  bool truncated = false;               // length exceeded the maximum: the tail of the tokens was cut
};

enum class Padding { none, max_length, longest };

struct EncodedBatch {
  std::vector<EncodedText> rows;
  int64_t num_truncated = 0;  // captions longer than max_length tokens (BOS and EOS included)
};

class ClipTokenizer {
 public:
  // Reads vocab.json, merges.txt and, when present, tokenizer_config.json and special_tokens_map.json
  // (special_tokens_map.json wins over tokenizer_config.json; `options` win over both).
  static ClipTokenizer from_folder(const std::filesystem::path& folder, const ClipTokenizerOptions& options = {});

  ClipTokenizer(ClipTokenizer&&) noexcept;
  ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
  ~ClipTokenizer();

  // tokenizer(text).input_ids: BOS + ids + EOS, no truncation, no padding.
  EncodedText encode(std::string_view text) const;
  // tokenizer(text, padding="max_length", max_length=n, truncation=True). 0 = model_max_length.
  EncodedText encode_padded(std::string_view text, int32_t max_length = 0) const;
  // A batch: Padding::max_length pads every row to max_length, Padding::longest to the longest row
  // (PickScore's processor), Padding::none leaves rows ragged. Truncation at max_length is always on.
  EncodedBatch encode_batch(const std::vector<std::string>& texts, Padding padding, int32_t max_length = 0) const;

  // The token strings (BPE pieces, with "</w>" word ends, and special tokens) of encode(text).
  std::vector<std::string> tokens(std::string_view text) const;
  // The cleaned text a piece is tokenized from (what step 2 produces), for inspection.
  static std::string clean_text(std::string_view text);

  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  int32_t unk_id() const;
  int32_t model_max_length() const;
  int32_t vocab_size() const;
  // The id of a vocabulary entry, or -1.
  int32_t token_to_id(const std::string& token) const;

 private:
  struct Impl;
  explicit ClipTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefdiff::tokenizer
