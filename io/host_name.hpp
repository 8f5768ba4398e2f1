// This machine's host name ("" when it has none).
#pragma once

#include <unistd.h>

#include <string>

namespace barge::io {

inline std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

}  // namespace barge::io
