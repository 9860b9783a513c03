# membal-numa-place: NUMA placement of VMs (libvirt XML or xl config).
# libvirt is optional: without it --uri is refused and the node count comes
# from --nodes or sysfs.
add_executable(membal-numa-place ${CMAKE_CURRENT_LIST_DIR}/numa-place.c)
if(NOT MEMBAL_GUEST_ONLY)
  pkg_check_modules(NUMA_LIBVIRT IMPORTED_TARGET libvirt)
  if(NUMA_LIBVIRT_FOUND)
    target_compile_definitions(membal-numa-place PRIVATE MEMBAL_NUMA_LIBVIRT)
    target_link_libraries(membal-numa-place PRIVATE PkgConfig::NUMA_LIBVIRT)
  endif()
endif()
install(TARGETS membal-numa-place RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dom0)
