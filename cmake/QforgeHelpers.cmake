# Helpers that give every architecture folder the same shape: one library, one test binary.

# qf_add_library(<folder> SOURCES ... [DEPS ...] [PUBLIC_LIBS ...] [PRIVATE_LIBS ...])
# Creates the static library qforge_<folder>; DEPS are other folders (qforge_<dep>).
function(qf_add_library folder)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PUBLIC_LIBS;PRIVATE_LIBS" ${ARGN})
  set(target qforge_${folder})
  add_library(${target} STATIC ${ARG_SOURCES})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  foreach(dep IN LISTS ARG_DEPS)
    target_link_libraries(${target} PUBLIC qforge_${dep})
  endforeach()
  if(ARG_PUBLIC_LIBS)
    target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_LIBS})
  endif()
  if(ARG_PRIVATE_LIBS)
    target_link_libraries(${target} PRIVATE ${ARG_PRIVATE_LIBS})
  endif()
  set_property(GLOBAL APPEND PROPERTY QF_ALL_LIBRARIES ${target})
endfunction()

# qf_add_tests(<name> SOURCES ... DEPS ... [LIBS ...])
# One GoogleTest binary per folder; every TEST is registered with CTest.
function(qf_add_tests name)
  if(NOT QF_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LIBS" ${ARGN})
  set(target qforge_${name}_tests)
  add_executable(${target} ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/tests/support/gtest_main.cc)
  target_include_directories(${target} PRIVATE ${OPENBLAS_INCLUDE_DIR})
  foreach(dep IN LISTS ARG_DEPS)
    target_link_libraries(${target} PRIVATE qforge_${dep})
  endforeach()
  target_link_libraries(${target} PRIVATE ${ARG_LIBS} qforge_base GTest::gtest ${BLAS_LIBRARIES})
  target_compile_definitions(${target} PRIVATE QF_SHARED_DIR="${QF_SHARED_DIR}"
                                               QF_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                               QF_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${target} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES ENVIRONMENT "QF_SHARED_DIR=${QF_SHARED_DIR};OMP_WAIT_POLICY=passive;QF_PROGRESS=0")
endfunction()

# qf_glob_sources(<sources_var> <tests_var> [SUBDIR ...])
# Globs the folder's *.cc (and those of the given subfolders) into library sources and *_test.cc files, so
# engineers add files without editing the list. CONFIGURE_DEPENDS re-globs on every build.
function(qf_glob_sources sources_var tests_var)
  set(patterns ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  foreach(sub IN LISTS ARGN)
    list(APPEND patterns ${CMAKE_CURRENT_SOURCE_DIR}/${sub}/*.cc)
  endforeach()
  file(GLOB all CONFIGURE_DEPENDS ${patterns})
  set(sources ${all})
  list(FILTER sources EXCLUDE REGEX "_test\\.cc$")
  set(tests ${all})
  list(FILTER tests INCLUDE REGEX "_test\\.cc$")
  set(${sources_var} ${sources} PARENT_SCOPE)
  set(${tests_var} ${tests} PARENT_SCOPE)
endfunction()
