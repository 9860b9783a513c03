# Host simulator: sim_core (model, scenarios, policies, fast runner),
# membal-sim (fast and live modes), membal-bench (policy comparison and
# policy cost). See sim/README.md.
set(_sim ${CMAKE_CURRENT_SOURCE_DIR})
add_library(sim_core STATIC ${_sim}/model.c ${_sim}/scenario.c
            ${_sim}/policies.c ${_sim}/baselines.c ${_sim}/oracle.c
            ${_sim}/run.c)
target_include_directories(sim_core PUBLIC ${_sim})
target_link_libraries(sim_core PUBLIC membal_policy m)
target_compile_definitions(sim_core PUBLIC _POSIX_C_SOURCE=200809L)

pkg_check_modules(SIM_XENSTORE IMPORTED_TARGET xenstore)
pkg_check_modules(SIM_RRD IMPORTED_TARGET librrd)

set(_live_src "")
if(SIM_XENSTORE_FOUND)
  set(_live_src ${_sim}/live.c)
endif()
add_executable(membal-sim ${_sim}/main.c ${_live_src})
target_link_libraries(membal-sim PRIVATE sim_core)
if(SIM_XENSTORE_FOUND)
  target_compile_definitions(membal-sim PRIVATE SIM_HAVE_XENSTORE)
  target_link_libraries(membal-sim PRIVATE PkgConfig::SIM_XENSTORE)
endif()

add_executable(membal-bench ${_sim}/bench.c)
target_link_libraries(membal-bench PRIVATE sim_core)
if(SIM_RRD_FOUND)
  target_compile_definitions(membal-bench PRIVATE SIM_HAVE_RRD)
  target_link_libraries(membal-bench PRIVATE PkgConfig::SIM_RRD)
endif()
install(TARGETS membal-sim membal-bench RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dom0)
install(DIRECTORY ${_sim}/scenarios/ DESTINATION ${CMAKE_INSTALL_DATADIR}/membal/scenarios COMPONENT dom0)

if(MEMBAL_TESTS)
  # sim/ is added before the top level enables testing
  enable_testing()
  find_library(SIM_CUNIT cunit)
  if(SIM_CUNIT AND EXISTS ${_sim}/tests/test_sim.c)
    add_executable(test_sim ${_sim}/tests/test_sim.c)
    target_link_libraries(test_sim PRIVATE sim_core ${SIM_CUNIT})
    add_test(NAME sim.unit COMMAND test_sim ${_sim}/scenarios)
  endif()
  # The short deterministic benchmark subset; fails unless the committed
  # ordering holds (sim/tests/expected-order.txt).
  add_test(NAME sim.bench_short
           COMMAND membal-bench --short --scenarios ${_sim}/scenarios
                   --check ${_sim}/tests/expected-order.txt
                   --out ${CMAKE_CURRENT_BINARY_DIR}/bench-short)
  set_tests_properties(sim.bench_short PROPERTIES TIMEOUT 120)
  add_test(NAME sim.bench_outputs COMMAND bash ${_sim}/tests/test_bench_plot.sh)
  set_tests_properties(sim.bench_outputs PROPERTIES TIMEOUT 360
    ENVIRONMENT "MEMBAL_BUILD_DIR=${CMAKE_BINARY_DIR};MEMBAL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  # Live mode against a real xenstored, alone and under the real collectd
  # pipeline (vmmem + membal, Backend "sim").
  foreach(t live pipeline)
    if(EXISTS ${_sim}/tests/test_${t}.sh)
      add_test(NAME sim.${t} COMMAND bash ${_sim}/tests/test_${t}.sh)
      set_tests_properties(sim.${t} PROPERTIES
        ENVIRONMENT "MEMBAL_BUILD_DIR=${CMAKE_BINARY_DIR};MEMBAL_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
        SKIP_RETURN_CODE 77 TIMEOUT 180 LABELS integration)
    endif()
  endforeach()
endif()
