// `qforge version`: prints the version.
#include <cstdio>

#include "qforge/cli/command.h"

namespace qforge::cli {
namespace {
CommandRegistrar reg("version", "print qforge's version", [](CLI::App&) -> RunFn {
  return [] {
    std::printf("qforge 0.1.0\n");
    return 0;
  };
});
}  // namespace
}  // namespace qforge::cli
