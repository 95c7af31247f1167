# Instrumentation for the libFuzzer build (QF_BUILD_FUZZERS=ON): included by the top-level CMakeLists.txt
# before any library is defined, so the harnesses in tests/fuzz/ see coverage of all of qforge.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "QF_BUILD_FUZZERS needs clang (e.g. -DCMAKE_CXX_COMPILER=clang++-14), got ${CMAKE_CXX_COMPILER_ID}")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -g)
add_link_options(-fsanitize=address,undefined)
