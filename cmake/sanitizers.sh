# Run-time options of the sanitizer builds: sourced by scripts/run_tests.sh (ASan + UBSan stage) and
# scripts/tsan.sh; source it before running a build-sanitize/ or build-tsan/ binary by hand. Values already
# in the environment win. Every report is fatal: the binaries are built with -fno-sanitize-recover=all, and
# halt_on_error covers the rest.
QF_SANITIZER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# exitcode=86: a report never looks like qforge's own "exit 1, error named" that the malformed-input and
# e2e tests expect. check_initialization_order: the CLI's subcommands register from static initializers.
export ASAN_OPTIONS=${ASAN_OPTIONS:-exitcode=86:halt_on_error=1:detect_leaks=1:check_initialization_order=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-exitcode=86:halt_on_error=1:print_stacktrace=1:report_error_type=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$QF_SANITIZER_DIR/lsan.supp:print_suppressions=0}
# ignore_noninstrumented_modules: LLVM's libomp is not built with TSan; its internal locking (seen only
# half) would be reported (Archer asks for this setting). Its synchronization reaches TSan through Archer.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$QF_SANITIZER_DIR/tsan.supp}
