// Calls the registry's blob transfers need and Node lacks (src/registry/storage/filesystem.ts).
//
// Writeback while an upload streams in: the registry fsyncs an upload's data once, just before the
// rename that makes it a blob. With the default dirty limits (10% of RAM before background writeback)
// nothing reaches the disk until then, so the client waits for the whole layer's writeback after its
// last byte. sync_file_range(SYNC_FILE_RANGE_WRITE) starts writeback of what has arrived so far, so
// the disk works while the network does and the final fsync only has the tail left. It does not
// make anything durable (that is still the fsync's job); it can block when the device queue is full,
// hence a libuv pool thread.
//
//   syncFileRangeAsync(fd, offset, nbytes)     → Promise<void>; rejects like fs (code, errno)
//
// Heap trimming: every chunk of an HTTP request body is copied by Node's parser into a fresh
// malloc'd buffer. glibc gives memory back to the kernel as soon as more than 128 KiB is free at the
// top of the heap, so under an upload the same pages are unmapped and faulted in again, page fault
// by page fault: a third of the CPU of a push went there. mallopt keeps freed memory for reuse.
//
//   tuneMalloc(trimThreshold, topPad, mmapThreshold) → void (bytes; 0 leaves a setting alone)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include "errors.h"

static int get_int64_arg(napi_env env, napi_value value, const char *what, int64_t *out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type != napi_number) {
    char message[96];
    snprintf(message, sizeof message, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return 0;
  }
  napi_get_value_int64(env, value, out);
  if (*out < 0) {
    char message[96];
    snprintf(message, sizeof message, "%s must not be negative", what);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
    return 0;
  }
  return 1;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int64_t offset;
  int64_t nbytes;
  int err;
} SyncRangeJob;

static void sync_range_execute(napi_env env, void *data) {
  SyncRangeJob *job = data;
  if (sync_file_range(job->fd, job->offset, job->nbytes, SYNC_FILE_RANGE_WRITE) != 0) job->err = errno;
}

static void sync_range_complete(napi_env env, napi_status status, void *data) {
  SyncRangeJob *job = data;
  if (job->err == 0 && status == napi_ok) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  } else {
    throw_errno(env, job->err != 0 ? job->err : EINTR, "sync_file_range", NULL, NULL);
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value js_sync_file_range_async(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "syncFileRangeAsync(fd, offset, nbytes)");
    return NULL;
  }
  int64_t fd, offset, nbytes;
  if (!get_int64_arg(env, argv[0], "fd", &fd) || !get_int64_arg(env, argv[1], "offset", &offset) ||
      !get_int64_arg(env, argv[2], "nbytes", &nbytes))
    return NULL;
  SyncRangeJob *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->fd = (int)fd;
  job->offset = offset;
  job->nbytes = nbytes;
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "strata.syncFileRange", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, sync_range_execute, sync_range_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value js_tune_malloc(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "tuneMalloc(trimThreshold, topPad, mmapThreshold)");
    return NULL;
  }
  int64_t trim, pad, mmap_threshold;
  if (!get_int64_arg(env, argv[0], "trimThreshold", &trim) || !get_int64_arg(env, argv[1], "topPad", &pad) ||
      !get_int64_arg(env, argv[2], "mmapThreshold", &mmap_threshold))
    return NULL;
  // Setting any of these also turns off glibc's dynamic adjustment of the mmap and trim thresholds.
  if (trim > 0) mallopt(M_TRIM_THRESHOLD, trim > INT32_MAX ? INT32_MAX : (int)trim);
  if (pad > 0) mallopt(M_TOP_PAD, pad > INT32_MAX ? INT32_MAX : (int)pad);
  if (mmap_threshold > 0) mallopt(M_MMAP_THRESHOLD, mmap_threshold > INT32_MAX ? INT32_MAX : (int)mmap_threshold);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

void strata_register_blobio(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"syncFileRangeAsync", NULL, js_sync_file_range_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tuneMalloc", NULL, js_tune_malloc, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
