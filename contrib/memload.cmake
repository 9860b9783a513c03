# membal-memload: guest memory workloads (mono, static) and a fake client
# publishing synthetic stats records (needs libxenstore).
pkg_check_modules(MEMLOAD_XS IMPORTED_TARGET xenstore)
add_executable(membal-memload ${CMAKE_CURRENT_LIST_DIR}/memload.c)
target_link_libraries(membal-memload PRIVATE membal_policy)
if(MEMLOAD_XS_FOUND)
  target_compile_definitions(membal-memload PRIVATE MEMLOAD_HAVE_XENSTORE)
  target_link_libraries(membal-memload PRIVATE PkgConfig::MEMLOAD_XS)
endif()
# Not packaged (component "tools" is not in CPACK_COMPONENTS_ALL): a test
# workload has no place on every guest; `cmake --install` installs it.
install(TARGETS membal-memload RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tools)
