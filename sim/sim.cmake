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
  # sim_schema.h: where the sim backend reads what live mode writes.
  target_include_directories(membal-sim PRIVATE ${PROJECT_SOURCE_DIR}/plugins/backends)
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

