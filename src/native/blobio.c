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
//
// An upload's digest off the event loop: hashing is a third of the registry's main thread under
// concurrent pushes, and Node's crypto hashes only synchronously. These run SHA-256/512 (OpenSSL's
// EVP, the copy linked into node) on a libuv pool thread; one digest takes one update at a time.
//
//   digestCreate(algorithm)                    → handle ('sha256' | 'sha512')
//   digestUpdateAsync(handle, buffer)          → Promise<void>; rejects if an update is running
//   digestFinal(handle)                        → lowercase hex; the handle is spent
//
// Direct I/O buffers: blob data is written and read with O_DIRECT, which needs the memory, the file
// offset and the length aligned to the logical block size. Node's buffers carry a malloc header, so
// these come from posix_memalign (freed when the Buffer is collected).
//
//   alignedBuffer(size)                        → Buffer of `size` bytes at a 4096-aligned address
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <openssl/evp.h>

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
  return queue_promise_work(env, "strata.syncFileRange", sync_range_execute, sync_range_complete, job, &job->deferred,
                            &job->work);
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

typedef struct {
  EVP_MD_CTX *ctx;
  int busy;
  int finished;
} Digest;

static void digest_finalize(napi_env env, void *data, void *hint) {
  Digest *digest = data;
  // A handle collected while an update runs cannot happen: the job holds a reference to it.
  EVP_MD_CTX_free(digest->ctx);
  free(digest);
}

static Digest *get_digest(napi_env env, napi_value value) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  void *data = NULL;
  if (type != napi_external || napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "a digest handle is expected");
    return NULL;
  }
  return data;
}

static napi_value js_digest_create(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[16] = "";
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "digestCreate(algorithm)");
    return NULL;
  }
  const EVP_MD *md = strcmp(name, "sha256") == 0 ? EVP_sha256() : strcmp(name, "sha512") == 0 ? EVP_sha512() : NULL;
  if (md == NULL) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "digestCreate: sha256 or sha512");
    return NULL;
  }
  Digest *digest = calloc(1, sizeof *digest);
  if (digest != NULL) digest->ctx = EVP_MD_CTX_new();
  if (digest == NULL || digest->ctx == NULL || EVP_DigestInit_ex(digest->ctx, md, NULL) != 1) {
    if (digest != NULL) EVP_MD_CTX_free(digest->ctx);
    free(digest);
    napi_throw_error(env, "ENOMEM", "digestCreate: out of memory");
    return NULL;
  }
  napi_value handle;
  napi_create_external(env, digest, digest_finalize, NULL, &handle);
  return handle;
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref handle_ref;
  napi_ref buffer_ref;
  Digest *digest;
  const unsigned char *data;
  size_t length;
  int ok;
} DigestJob;

static void digest_execute(napi_env env, void *data) {
  DigestJob *job = data;
  job->ok = EVP_DigestUpdate(job->digest->ctx, job->data, job->length) == 1;
}

static void digest_complete(napi_env env, napi_status status, void *data) {
  DigestJob *job = data;
  job->digest->busy = 0;
  if (job->ok && status == napi_ok) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  } else {
    napi_value message, error;
    napi_create_string_utf8(env, "digest update failed", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_reference(env, job->handle_ref);
  napi_delete_reference(env, job->buffer_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value js_digest_update_async(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "digestUpdateAsync(handle, buffer)");
    return NULL;
  }
  Digest *digest = get_digest(env, argv[0]);
  if (digest == NULL) return NULL;
  bool is_buffer = false;
  napi_is_buffer(env, argv[1], &is_buffer);
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "digestUpdateAsync: a Buffer is expected");
    return NULL;
  }
  if (digest->busy || digest->finished) {
    napi_throw_error(env, "ERR_INVALID_STATE", digest->busy ? "digest update already running" : "digest finished");
    return NULL;
  }
  DigestJob *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  void *bytes = NULL;
  napi_get_buffer_info(env, argv[1], &bytes, &job->length);
  job->data = bytes;
  job->digest = digest;
  digest->busy = 1;
  napi_create_reference(env, argv[0], 1, &job->handle_ref);
  napi_create_reference(env, argv[1], 1, &job->buffer_ref);
  return queue_promise_work(env, "strata.digestUpdate", digest_execute, digest_complete, job, &job->deferred,
                            &job->work);
}

static napi_value js_digest_final(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "digestFinal(handle)");
    return NULL;
  }
  Digest *digest = get_digest(env, argv[0]);
  if (digest == NULL) return NULL;
  if (digest->busy || digest->finished) {
    napi_throw_error(env, "ERR_INVALID_STATE", digest->busy ? "digest update still running" : "digest finished");
    return NULL;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  digest->finished = 1;
  if (EVP_DigestFinal_ex(digest->ctx, md, &md_len) != 1) {
    napi_throw_error(env, NULL, "digest final failed");
    return NULL;
  }
  char hex[EVP_MAX_MD_SIZE * 2 + 1];
  static const char digits[] = "0123456789abcdef";
  for (unsigned int i = 0; i < md_len; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  napi_value result;
  napi_create_string_utf8(env, hex, 2 * md_len, &result);
  return result;
}

static void free_aligned(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value js_aligned_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t size;
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "alignedBuffer(size)");
    return NULL;
  }
  if (!get_int64_arg(env, argv[0], "size", &size)) return NULL;
  if (size == 0 || size > ((int64_t)1 << 30)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "size must be between 1 byte and 1 GiB");
    return NULL;
  }
  void *memory = NULL;
  int err = posix_memalign(&memory, 4096, (size_t)size);
  if (err != 0) return throw_errno(env, err, "posix_memalign", NULL, NULL);
  napi_value result;
  if (napi_create_external_buffer(env, (size_t)size, memory, free_aligned, NULL, &result) != napi_ok) {
    free(memory);
    napi_throw_error(env, NULL, "could not create an external buffer");
    return NULL;
  }
  return result;
}

void strata_register_blobio(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"syncFileRangeAsync", NULL, js_sync_file_range_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tuneMalloc", NULL, js_tune_malloc, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestCreate", NULL, js_digest_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestUpdateAsync", NULL, js_digest_update_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestFinal", NULL, js_digest_final, NULL, NULL, NULL, napi_enumerable, NULL},
      {"alignedBuffer", NULL, js_aligned_buffer, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
