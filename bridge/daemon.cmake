# bridge/daemon.cmake - the daemon's own files (bridge.h): the frame, logins, portals, commands.
target_sources(wb_bridge PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/bridge.c
  ${CMAKE_CURRENT_SOURCE_DIR}/login.c
  ${CMAKE_CURRENT_SOURCE_DIR}/portal.c
  ${CMAKE_CURRENT_SOURCE_DIR}/commands.c
  ${CMAKE_CURRENT_SOURCE_DIR}/group.c
  ${CMAKE_CURRENT_SOURCE_DIR}/puppet.c
  ${CMAKE_CURRENT_SOURCE_DIR}/qr.c)

if(NOT WABRIDGE_FUZZ)
  add_executable(test_rooms ${CMAKE_SOURCE_DIR}/tests/bridge/test_rooms.c)
  target_include_directories(test_rooms PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(test_rooms PRIVATE wb_bridge)
  add_test(NAME test_rooms COMMAND test_rooms)
  set_tests_properties(test_rooms PROPERTIES LABELS bridge TIMEOUT 60)
  add_executable(test_absent ${CMAKE_SOURCE_DIR}/tests/bridge/test_absent.c)
  target_include_directories(test_absent PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(test_absent PRIVATE wb_bridge)
  add_test(NAME test_absent COMMAND test_absent)
  set_tests_properties(test_absent PROPERTIES LABELS bridge TIMEOUT 60)
  add_executable(test_group_data ${CMAKE_SOURCE_DIR}/tests/bridge/test_group_data.c)
  target_include_directories(test_group_data PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(test_group_data PRIVATE wb_bridge)
  add_test(NAME test_group_data COMMAND test_group_data)
  set_tests_properties(test_group_data PROPERTIES LABELS bridge TIMEOUT 60)
endif()
