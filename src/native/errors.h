// The one way the addon turns an errno into a thrown JS error shaped like Node's fs errors:
// { code, errno (negative), syscall, path? }, message "CODE: text, syscall 'path': detail".
#pragma once
#include <node_api.h>

napi_value throw_errno(napi_env env, int err, const char *syscall_name, const char *path, const char *detail);
