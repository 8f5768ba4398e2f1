// Shared by the manifest's sources: manifest_format.cpp (the text format: parse, format,
// path rules) and manifest.cpp (reading files, hashing, ManifestWriter).
#pragma once

#include <string>
#include <string_view>

namespace barge::pipeline::detail {

// Paths are arbitrary bytes; an error message must stay one short printable line: the path
// quoted, printable_path, cut past 256 bytes.
std::string display_path(std::string_view path);

}  // namespace barge::pipeline::detail
