// The one way the addon turns an errno into a thrown JS error shaped like Node's fs errors:
// { code, errno (negative), syscall, path? }, message "CODE: text, syscall 'path': detail".
#pragma once
#include <node_api.h>

napi_value throw_errno(napi_env env, int err, const char *syscall_name, const char *path, const char *detail);

// Queues `execute` on libuv's thread pool and returns a promise; `complete` runs on the JS thread and
// settles `*deferred`. The one way the addon's *Async calls start their work.
napi_value queue_promise_work(napi_env env, const char *name, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                              napi_async_work *work);
