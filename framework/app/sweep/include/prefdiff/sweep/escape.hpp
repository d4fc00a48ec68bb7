// Text from sweep files, plans and recipes (variant names, grid values, keys, paths) as it is written into
// the other languages of a sweep's outputs: gnuplot scripts, Markdown, CSV. Names are restricted at parse
// time (run/run_name.hpp), but `sweep report` also reads a sweep.json written elsewhere and recipe values
// are free text, so every such string goes through these. Torch-free.
#pragma once

#include <string>
#include <string_view>

namespace prefdiff::sweep {

// A gnuplot string constant. Single-quoted, because gnuplot runs `backquoted` commands inside double
// quotes (and not inside single quotes); a quote is doubled, control characters are shown as escapes
// (a newline would end the command).
std::string gnuplot_string(std::string_view text);

// Markdown text that renders as itself: plain text unchanged when it cannot be read as markup, otherwise
// a code span with a fence longer than any run of backticks inside. Control characters are shown as
// escapes. `in_table`: a table cell, where '|' is escaped even inside code spans.
std::string markdown_text(std::string_view text, bool in_table = false);
// Always a code span (for names and commands set in code in running text).
std::string markdown_code(std::string_view text, bool in_table = false);

// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break; control characters
// other than line breaks shown as escapes; a text starting with = + - @ that is not a number gets a
// leading apostrophe, so that spreadsheets do not run it as a formula.
std::string csv_field(std::string_view text);

}  // namespace prefdiff::sweep
