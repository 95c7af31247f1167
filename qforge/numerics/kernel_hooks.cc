// The process-wide fast-path table (see kernel_hooks.h).
#include "qforge/numerics/kernel_hooks.h"

#include <atomic>

namespace qforge {
namespace {
std::atomic<const QuantFastPaths*> g_paths{nullptr};
}  // namespace

void RegisterQuantFastPaths(const QuantFastPaths* paths) { g_paths.store(paths, std::memory_order_release); }
const QuantFastPaths* GetQuantFastPaths() { return g_paths.load(std::memory_order_acquire); }

}  // namespace qforge
