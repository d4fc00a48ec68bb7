#pragma once
// Caption clean-up as the released Stable Diffusion pipelines ran it: transformers 4.x's slow
// CLIPTokenizer with ftfy installed applies, to each piece of text between special tokens,
//     whitespace_clean(ftfy.fix_text(text)).lower()
// where whitespace_clean collapses runs of whitespace to one space and strips the ends.
//
// ftfy_fix_text is a port of ftfy 6.3.1's fix_text with its default settings: HTML entities decoded
// (unless the line contains '<'), mojibake repaired (UTF-8 read as one of ftfy's single-byte code pages,
// whole or in embedded pieces; C1 controls as Windows-1252), Latin ligatures split, full-width characters
// narrowed, curly quotes straightened, line breaks unified, terminal escapes and invisible control
// characters removed, then NFC; repeated until nothing changes. Its decision data comes from ftfy itself
// (ftfy_tables.inc). What differs from Python is listed in docs/backbones.md ("CLIP tokenizer").

#include <string>
#include <string_view>

namespace prefdiff::tokenizer {

std::u32string ftfy_fix_text(std::u32string_view text);
// ftfy.fix_encoding: only the mojibake repair, repeated until stable.
std::u32string ftfy_fix_encoding(std::u32string_view text);

// whitespace_clean(ftfy.fix_text(text)).lower(), on code points and on UTF-8.
std::u32string clip_clean_text(std::u32string_view text);
std::string clip_clean_text(std::string_view utf8);

}  // namespace prefdiff::tokenizer
