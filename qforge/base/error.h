// Errors: QF_CHECK for user errors (bad config, file, shape) and QF_ASSERT for qforge's own bugs.
//
// QF_CHECK(cond, fmt, args...) throws qforge::Error with a formatted message that names the offending
// file, tensor, quantizer or config key. The CLI maps Error to exit code 1 (2 for usage errors).
// QF_ASSERT(cond) aborts: it guards invariants that no input may break. QF_DASSERT is QF_ASSERT in debug
// builds only, for hot loops inside kernels.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace qforge {

// A user-facing error: bad input, config, file or shape. The message is complete and self-explanatory.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
[[noreturn]] void AssertFail(const char* expr, const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace qforge

#define QF_CHECK(cond, ...)                                         \
  do {                                                              \
    if (!(cond)) [[unlikely]] {                                     \
      throw ::qforge::Error(::fmt::format(__VA_ARGS__));            \
    }                                                               \
  } while (0)

// Throws unconditionally; for error paths that are not a simple condition.
#define QF_FAIL(...) throw ::qforge::Error(::fmt::format(__VA_ARGS__))

#define QF_ASSERT(cond, ...)                                                          \
  do {                                                                                \
    if (!(cond)) [[unlikely]] {                                                       \
      ::qforge::detail::AssertFail(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
    }                                                                                 \
  } while (0)

#ifdef NDEBUG
#define QF_DASSERT(cond, ...) \
  do {                        \
  } while (0)
#else
#define QF_DASSERT(cond, ...) QF_ASSERT(cond, __VA_ARGS__)
#endif
