# bridge/daemon.cmake - the daemon's own files (bridge.h): the frame, logins, portals, commands.
target_sources(wb_bridge PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/bridge.c
  ${CMAKE_CURRENT_SOURCE_DIR}/login.c
  ${CMAKE_CURRENT_SOURCE_DIR}/portal.c
  ${CMAKE_CURRENT_SOURCE_DIR}/commands.c
  ${CMAKE_CURRENT_SOURCE_DIR}/group.c
  ${CMAKE_CURRENT_SOURCE_DIR}/qr.c)
