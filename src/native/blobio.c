// Calls the registry's blob transfers need and Node lacks (src/registry/storage/filesystem.ts).
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
// Direct I/O buffers: with the registry's `storage.directIo`, blob data goes through O_DIRECT, which needs the memory, the file
// offset and the length aligned to the logical block size. Node's buffers carry a malloc header, so
// these come from posix_memalign (freed when the Buffer is collected).
//
//   alignedBuffer(size)                        → Buffer of `size` bytes at a 4096-aligned address
//
// Upload bodies straight from the socket: Node's HTTP parser copies every piece of a request body into
// a fresh buffer, and collecting those (V8 counts them as external memory and runs a full collection
// each 64 MiB) plus the stream machinery around them was half of the registry's CPU under concurrent
// pushes. Once the registry has stopped Node reading a connection (src/registry/http/socket-body.ts),
// this reads the rest of the body from a dup of its descriptor on a thread of its own, while a second
// thread hashes it into a digest handle and writes it at `offset` (whole aligned blocks through
// `directFd` when that is O_DIRECT, else -1; the rest through `fileFd`) and a third fdatasyncs each
// 8 MiB, so the fsync that publishes the blob has only the tail left. `prefix` is the part of the body
// Node had already read. A `length` of -1 means a chunked body (Transfer-Encoding: chunked): the
// reader decodes the chunk framing in place as bytes arrive (the prefix then is still coded) and
// stops at the body's end; extensions and trailers are ignored.
//
//   receiveToFile(socketFd, fileFd, directFd, offset, prefix, length, digest|null, idleMs, cancel)
//       → Promise<number>: bytes written (prefix + length, or the decoded size). `cancel` is an
//         Int32Array; a non-zero cancel[0] stops the transfer. On failure the error (code ECONNRESET
//         for a body cut short, ETIMEDOUT after idleMs without data, ECANCELED, EPROTO for a malformed
//         chunked coding) carries `received`: the bytes written, which stay in the file (the digest no
//         longer matches them and must be dropped).
//
// Blob downloads the other way: sendfile(2) from the page cache into the socket on a thread of its own,
// once Node has flushed the response's headers (src/registry/http/socket-send.ts). No byte of the
// body passes through user space or JavaScript.
//
//   sendFileToSocket(socketFd, fileFd, offset, length, idleMs, cancel) → Promise<number> (bytes sent);
//       errors as receiveToFile's (EPIPE/ECONNRESET: the client went away; EIO: the file is shorter).
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
#include <poll.h>
#include <pthread.h>
#include <sys/sendfile.h>
#include <unistd.h>

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

#define PUMP_BUFFER (1 << 20)
#define PUMP_BUFFERS 3
#define PUMP_ALIGN 4096
#define PUMP_POLL_MS 250
// Data is synced to the disk each time this much more has been written, on a third thread, so that
// the fsync before the blob appears (the caller's) has only the tail left to wait for.
#define PUMP_SYNC_STEP ((int64_t)8 << 20)

// A transfer runs on two threads: the reader fills buffers from the socket, the writer hashes and
// writes them, so the socket keeps draining while a direct write waits for the device.
typedef struct {
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
  napi_ref digest_ref;
  napi_ref cancel_ref;
  Digest *digest;
  volatile int32_t *cancel;
  int sock;
  int file_fd;
  int direct_fd;
  int64_t offset;
  int64_t length;
  int64_t idle_ms;
  unsigned char *prefix;
  size_t prefix_length;
  unsigned char *buffers[PUMP_BUFFERS];
  pthread_mutex_t lock;
  pthread_cond_t changed;
  // Filled buffers waiting for the writer (a ring), and the free ones.
  int queue[PUMP_BUFFERS];
  size_t queue_length[PUMP_BUFFERS];
  int queue_hash[PUMP_BUFFERS];
  int queue_head;
  int queue_count;
  int free_list[PUMP_BUFFERS];
  int free_count;
  int reader_done;
  int write_err;
  const char *write_syscall;
  // Bytes written, from `offset`; only the writer changes it until both threads are done.
  int64_t written;
  // Writer → syncer: sync everything up to sync_target; sync_quit ends the syncer.
  int64_t sync_target;
  int64_t synced;
  int64_t sync_mark;
  int sync_quit;
  int err;
  const char *syscall_name;
} PumpJob;

// --- What the socket threads share (receiveToFile, sendFileToSocket) ---

// The Int32Array whose first element, set by JS, stops a transfer; NULL (with a TypeError thrown) if
// the value is not one.
static volatile int32_t *get_cancel_flag(napi_env env, napi_value value, const char *fn) {
  bool is_typedarray = false;
  napi_is_typedarray(env, value, &is_typedarray);
  napi_typedarray_type array_type;
  size_t array_length = 0;
  void *data = NULL;
  if (is_typedarray) napi_get_typedarray_info(env, value, &array_type, &array_length, &data, NULL, NULL);
  if (!is_typedarray || array_type != napi_int32_array || array_length < 1 || data == NULL) {
    char message[96];
    snprintf(message, sizeof message, "%s: cancel must be an Int32Array", fn);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
    return NULL;
  }
  return data;
}

// Waits (one poll slice) for `events` on a non-blocking socket whose last call said EAGAIN. Returns 0
// to try again, or the error that ends the transfer: ETIMEDOUT once nothing happened for idle_ms,
// EPIPE when a writer's peer hung up, poll's own error (then *syscall_name is "poll").
static int wait_socket(int sock, short events, int64_t *idle, int64_t idle_ms, const char **syscall_name) {
  struct pollfd waiting = {.fd = sock, .events = events};
  int ready = poll(&waiting, 1, PUMP_POLL_MS);
  if (ready == 0) {
    *idle += PUMP_POLL_MS;
    return *idle >= idle_ms ? ETIMEDOUT : 0;
  }
  if (ready < 0) {
    if (errno == EINTR) return 0;
    *syscall_name = "poll";
    return errno;
  }
  if ((events & POLLOUT) != 0 && (waiting.revents & (POLLERR | POLLHUP)) != 0 && (waiting.revents & POLLOUT) == 0)
    return EPIPE;
  return 0;
}

// Creates the promise's threadsafe function and starts `main(job)` on a detached thread, which hands
// the job back to `done` on the JS thread. Returns the promise, or NULL with an error thrown (the
// caller then frees the job; the threadsafe function is already gone).
static napi_value start_socket_thread(napi_env env, const char *name, void *(*main)(void *),
                                      napi_threadsafe_function_call_js done, void *job, napi_deferred *deferred,
                                      napi_threadsafe_function *tsfn) {
  napi_value promise, resource;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  if (napi_create_threadsafe_function(env, NULL, NULL, resource, 0, 1, NULL, NULL, NULL, done, tsfn) != napi_ok) {
    napi_throw_error(env, NULL, "could not create a threadsafe function");
    return NULL;
  }
  pthread_t thread;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int err = pthread_create(&thread, &attr, main, job);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    napi_release_threadsafe_function(*tsfn, napi_tsfn_abort);
    return throw_errno(env, err, "pthread_create", NULL, NULL);
  }
  return promise;
}

// The thread's last act: hands the job to the JS thread, which may free it at once.
static void finish_socket_thread(napi_threadsafe_function tsfn, void *job) {
  napi_call_threadsafe_function(tsfn, job, napi_tsfn_blocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
}

// Frees a job and what it owns (its buffers are freed here, not by the threads, which may be gone).
static void pump_free(PumpJob *job) {
  for (int i = 0; i < PUMP_BUFFERS; i++) free(job->buffers[i]);
  free(job->prefix);
  pthread_mutex_destroy(&job->lock);
  pthread_cond_destroy(&job->changed);
  free(job);
}

static int pwrite_all(int fd, const unsigned char *data, size_t length, int64_t position) {
  while (length > 0) {
    ssize_t n = pwrite(fd, data, length, position);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    data += n;
    length -= (size_t)n;
    position += n;
  }
  return 0;
}

// Writer side: hashes (unless the batch is the kept part of an interrupted body) and writes one batch
// at offset + written, whole blocks directly when that is aligned.
static int pump_write(PumpJob *job, const unsigned char *data, size_t length, int hash) {
  if (hash && job->digest != NULL && EVP_DigestUpdate(job->digest->ctx, data, length) != 1) {
    job->write_syscall = "digest";
    return EIO;
  }
  int64_t position = job->offset + job->written;
  size_t blocks = 0;
  if (job->direct_fd >= 0 && position % PUMP_ALIGN == 0) blocks = length - length % PUMP_ALIGN;
  int err = 0;
  if (blocks > 0) {
    ssize_t n = pwrite(job->direct_fd, data, blocks, position);
    if (n < 0) err = errno;
    else if ((size_t)n != blocks) err = EIO;
  }
  if (err == 0 && blocks < length) err = pwrite_all(job->file_fd, data + blocks, length - blocks, position + (int64_t)blocks);
  if (err != 0) {
    job->write_syscall = "write";
    return err;
  }
  job->written += (int64_t)length;
  return 0;
}

static void *pump_writer(void *arg) {
  PumpJob *job = arg;
  pthread_mutex_lock(&job->lock);
  for (;;) {
    while (job->queue_count == 0 && !job->reader_done) pthread_cond_wait(&job->changed, &job->lock);
    if (job->queue_count == 0) break;
    int index = job->queue[job->queue_head];
    size_t length = job->queue_length[job->queue_head];
    int hash = job->queue_hash[job->queue_head];
    job->queue_head = (job->queue_head + 1) % PUMP_BUFFERS;
    job->queue_count--;
    int failed = job->write_err != 0;
    pthread_mutex_unlock(&job->lock);
    // After a failed write nothing more is written: the file holds a prefix of the body.
    int err = failed ? 0 : pump_write(job, job->buffers[index], length, hash);
    pthread_mutex_lock(&job->lock);
    if (err != 0) job->write_err = err;
    job->free_list[job->free_count++] = index;
    if (err == 0 && job->written - job->sync_mark >= PUMP_SYNC_STEP) {
      job->sync_target = job->written;
      job->sync_mark = job->written;
    }
    pthread_cond_broadcast(&job->changed);
  }
  pthread_mutex_unlock(&job->lock);
  return NULL;
}

static void *pump_syncer(void *arg) {
  PumpJob *job = arg;
  pthread_mutex_lock(&job->lock);
  for (;;) {
    while (job->sync_target <= job->synced && !job->sync_quit) pthread_cond_wait(&job->changed, &job->lock);
    if (job->sync_quit) break;
    int64_t target = job->sync_target;
    pthread_mutex_unlock(&job->lock);
    // Only a head start: a failure here is the final fsync's to report.
    fdatasync(job->file_fd);
    pthread_mutex_lock(&job->lock);
    job->synced = target;
  }
  pthread_mutex_unlock(&job->lock);
  return NULL;
}

// Reader side: a free buffer, or -1 once the writer has failed.
static int pump_take(PumpJob *job) {
  pthread_mutex_lock(&job->lock);
  while (job->free_count == 0 && job->write_err == 0) pthread_cond_wait(&job->changed, &job->lock);
  int index = job->write_err == 0 ? job->free_list[--job->free_count] : -1;
  pthread_mutex_unlock(&job->lock);
  return index;
}

static void pump_submit(PumpJob *job, int index, size_t length, int hash) {
  pthread_mutex_lock(&job->lock);
  int slot = (job->queue_head + job->queue_count) % PUMP_BUFFERS;
  job->queue[slot] = index;
  job->queue_length[slot] = length;
  job->queue_hash[slot] = hash;
  job->queue_count++;
  pthread_cond_broadcast(&job->changed);
  pthread_mutex_unlock(&job->lock);
}

// How many bytes the batch being filled may hold: up to the next block boundary when unaligned.
static size_t pump_batch(const PumpJob *job, int64_t queued) {
  if (job->direct_fd < 0) return PUMP_BUFFER;
  int64_t misalignment = (job->offset + queued) % PUMP_ALIGN;
  return misalignment == 0 ? PUMP_BUFFER : (size_t)(PUMP_ALIGN - misalignment);
}

// --- Chunked request bodies (RFC 9112 §7.1), decoded in place as they arrive ---

enum {
  CHUNK_SIZE,        // hex digits of a chunk's size
  CHUNK_EXTENSION,   // after the size: extensions (and whitespace), ignored up to CR
  CHUNK_SIZE_LF,     // the LF ending the size line
  CHUNK_DATA,        // `left` bytes of data
  CHUNK_DATA_CR,     // the CRLF after a chunk's data
  CHUNK_DATA_LF,
  CHUNK_TRAILER_START,  // after the last chunk: a trailer field, or the CRLF that ends the body
  CHUNK_TRAILER,     // a trailer field, ignored up to CR
  CHUNK_TRAILER_LF,
  CHUNK_END_LF,      // the LF of the body's last line
  CHUNK_DONE,
};

// Sizes below 2^60; a chunk's extensions, and the trailer, are ignored but may not run on without end.
#define CHUNK_MAX_DIGITS 15
#define CHUNK_MAX_META (16 << 10)

typedef struct {
  int state;
  int digits;
  uint64_t left;
  size_t meta;
} ChunkDecoder;

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes raw[0..n) in place: the chunks' data moves to the front and the framing is dropped (no
// byte moves twice, so a read costs at most one more copy). Returns the bytes of data now at the
// front, or -1 when the coding is malformed. Stops at the end of the body (CHUNK_DONE): bytes after
// it belong to no body of this request and are ignored.
static ssize_t chunk_decode(ChunkDecoder *d, unsigned char *raw, size_t n) {
  size_t in = 0, out = 0;
  while (in < n && d->state != CHUNK_DONE) {
    if (d->state == CHUNK_DATA) {
      size_t take = n - in;
      if ((uint64_t)take > d->left) take = (size_t)d->left;
      if (out != in) memmove(raw + out, raw + in, take);
      out += take;
      in += take;
      d->left -= take;
      if (d->left == 0) d->state = CHUNK_DATA_CR;
      continue;
    }
    unsigned char c = raw[in++];
    switch (d->state) {
      case CHUNK_SIZE: {
        int v = hex_value(c);
        if (v >= 0) {
          if (++d->digits > CHUNK_MAX_DIGITS) return -1;
          d->left = d->left * 16 + (uint64_t)v;
        } else if (d->digits == 0) {
          return -1;
        } else if (c == ';' || c == ' ' || c == '\t') {
          d->state = CHUNK_EXTENSION;
        } else if (c == '\r') {
          d->state = CHUNK_SIZE_LF;
        } else {
          return -1;
        }
        break;
      }
      case CHUNK_EXTENSION:
        if (c == '\r') d->state = CHUNK_SIZE_LF;
        else if (c == '\n' || ++d->meta > CHUNK_MAX_META) return -1;
        break;
      case CHUNK_SIZE_LF:
        if (c != '\n') return -1;
        d->digits = 0;
        d->meta = 0;
        d->state = d->left == 0 ? CHUNK_TRAILER_START : CHUNK_DATA;
        break;
      case CHUNK_DATA_CR:
        if (c != '\r') return -1;
        d->state = CHUNK_DATA_LF;
        break;
      case CHUNK_DATA_LF:
        if (c != '\n') return -1;
        d->state = CHUNK_SIZE;
        break;
      case CHUNK_TRAILER_START:
        if (c == '\r') d->state = CHUNK_END_LF;
        else if (c == '\n' || ++d->meta > CHUNK_MAX_META) return -1;
        else d->state = CHUNK_TRAILER;
        break;
      case CHUNK_TRAILER:
        if (c == '\r') d->state = CHUNK_TRAILER_LF;
        else if (c == '\n' || ++d->meta > CHUNK_MAX_META) return -1;
        break;
      case CHUNK_TRAILER_LF:
        if (c != '\n') return -1;
        d->state = CHUNK_TRAILER_START;
        break;
      case CHUNK_END_LF:
        if (c != '\n') return -1;
        d->state = CHUNK_DONE;
        break;
      default:
        return -1;
    }
  }
  return (ssize_t)out;
}

static void *pump_main(void *arg) {
  PumpJob *job = arg;
  int err = 0;
  const char *syscall_name = "read";
  pthread_t writer, syncer;
  int syncer_started = pthread_create(&syncer, NULL, pump_syncer, job) == 0;
  int writer_started = pthread_create(&writer, NULL, pump_writer, job) == 0;
  if (!writer_started) {
    err = EAGAIN;
    syscall_name = "pthread_create";
  }
  int index = err == 0 ? pump_take(job) : -1;
  size_t staged = 0;
  int64_t queued = 0;
  size_t prefix_at = 0;
  // A chunked body (length < 0) ends where its coding says; the prefix is still coded then.
  int chunked = job->length < 0;
  ChunkDecoder decoder = {.state = CHUNK_SIZE};
  int64_t remaining = job->length;
  int64_t idle = 0;
  while (err == 0 && index >= 0 &&
         (chunked ? decoder.state != CHUNK_DONE : prefix_at < job->prefix_length || remaining > 0)) {
    size_t limit = pump_batch(job, queued);
    unsigned char *at = job->buffers[index] + staged;
    size_t got;
    if (prefix_at < job->prefix_length) {
      got = limit - staged;
      if (got > job->prefix_length - prefix_at) got = job->prefix_length - prefix_at;
      memcpy(at, job->prefix + prefix_at, got);
      prefix_at += got;
    } else {
      if (job->cancel[0] != 0) {
        err = ECANCELED;
        break;
      }
      size_t want = limit - staged;
      if (!chunked && (int64_t)want > remaining) want = (size_t)remaining;
      ssize_t n = read(job->sock, at, want);
      if (n == 0) {
        err = ECONNRESET;
        break;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          err = errno;
          break;
        }
        err = wait_socket(job->sock, POLLIN, &idle, job->idle_ms, &syscall_name);
        continue;
      }
      got = (size_t)n;
      remaining -= n;
      idle = 0;
    }
    if (chunked) {
      ssize_t data = chunk_decode(&decoder, at, got);
      if (data < 0) {
        err = EPROTO;
        break;
      }
      got = (size_t)data;
    }
    staged += got;
    if (staged == limit) {
      pump_submit(job, index, staged, 1);
      queued += (int64_t)staged;
      staged = 0;
      index = pump_take(job);
    }
  }
  // What arrived is kept either way: hashed when complete, as the kept part of an interrupted body if not.
  if (index >= 0 && staged > 0) pump_submit(job, index, staged, err == 0);
  if (writer_started) {
    pthread_mutex_lock(&job->lock);
    job->reader_done = 1;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->lock);
    pthread_join(writer, NULL);
  }
  if (syncer_started) {
    pthread_mutex_lock(&job->lock);
    job->sync_quit = 1;
    pthread_cond_broadcast(&job->changed);
    pthread_mutex_unlock(&job->lock);
    pthread_join(syncer, NULL);
  }
  if (err == 0 && job->write_err != 0) {
    err = job->write_err;
    syscall_name = job->write_syscall;
  }
  job->err = err;
  job->syscall_name = syscall_name;
  close(job->sock);
  finish_socket_thread(job->tsfn, job);
  return NULL;
}

static void pump_done(napi_env env, napi_value js_callback, void *context, void *data) {
  PumpJob *job = data;
  if (env != NULL) {
    if (job->digest != NULL) job->digest->busy = 0;
    if (job->err == 0) {
      napi_value written;
      napi_create_int64(env, job->written, &written);
      napi_resolve_deferred(env, job->deferred, written);
    } else {
      throw_errno(env, job->err, job->syscall_name != NULL ? job->syscall_name : "read", NULL,
                  job->err == ECONNRESET ? "the request body ended early"
                  : job->err == EPROTO   ? "malformed chunked request body"
                                         : NULL);
      napi_value error, received;
      napi_get_and_clear_last_exception(env, &error);
      napi_create_int64(env, job->written, &received);
      napi_set_named_property(env, error, "received", received);
      napi_reject_deferred(env, job->deferred, error);
    }
    if (job->digest_ref != NULL) napi_delete_reference(env, job->digest_ref);
    napi_delete_reference(env, job->cancel_ref);
  }
  pump_free(job);
}

static napi_value js_receive_to_file(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 9) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS",
                          "receiveToFile(socketFd, fileFd, directFd, offset, prefix, length, digest, idleMs, cancel)");
    return NULL;
  }
  int64_t sock, file_fd, offset, length, idle_ms;
  int64_t direct_fd = -1;
  napi_valuetype direct_type;
  napi_typeof(env, argv[2], &direct_type);
  if (direct_type == napi_number) napi_get_value_int64(env, argv[2], &direct_fd);
  if (!get_int64_arg(env, argv[0], "socketFd", &sock) || !get_int64_arg(env, argv[1], "fileFd", &file_fd) ||
      !get_int64_arg(env, argv[3], "offset", &offset) || !get_int64_arg(env, argv[7], "idleMs", &idle_ms))
    return NULL;
  // The length may be -1 (a chunked body) but nothing else below 0.
  napi_valuetype length_type;
  napi_typeof(env, argv[5], &length_type);
  if (length_type == napi_number) napi_get_value_int64(env, argv[5], &length);
  if (length_type != napi_number || length < -1) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "receiveToFile: length must be a byte count, or -1 for chunked");
    return NULL;
  }
  bool is_buffer = false;
  napi_is_buffer(env, argv[4], &is_buffer);
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "receiveToFile: prefix must be a Buffer");
    return NULL;
  }
  void *prefix = NULL;
  size_t prefix_length = 0;
  napi_get_buffer_info(env, argv[4], &prefix, &prefix_length);
  if (prefix_length > PUMP_BUFFER) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "receiveToFile: prefix larger than 1 MiB");
    return NULL;
  }
  Digest *digest = NULL;
  napi_valuetype digest_type;
  napi_typeof(env, argv[6], &digest_type);
  if (digest_type != napi_null && digest_type != napi_undefined) {
    digest = get_digest(env, argv[6]);
    if (digest == NULL) return NULL;
    if (digest->busy || digest->finished) {
      napi_throw_error(env, "ERR_INVALID_STATE", digest->busy ? "digest update already running" : "digest finished");
      return NULL;
    }
  }
  volatile int32_t *cancel = get_cancel_flag(env, argv[8], "receiveToFile");
  if (cancel == NULL) return NULL;
  int dup_fd = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return throw_errno(env, errno, "dup", NULL, NULL);
  PumpJob *job = calloc(1, sizeof *job);
  int allocated = job != NULL;
  for (int i = 0; allocated && i < PUMP_BUFFERS; i++) {
    void *buffer = NULL;
    allocated = posix_memalign(&buffer, PUMP_ALIGN, PUMP_BUFFER) == 0;
    if (allocated) {
      job->buffers[i] = buffer;
      job->free_list[job->free_count++] = i;
    }
  }
  if (allocated && prefix_length > 0) {
    job->prefix = malloc(prefix_length);
    allocated = job->prefix != NULL;
  }
  if (!allocated) {
    if (job != NULL) {
      for (int i = 0; i < PUMP_BUFFERS; i++) free(job->buffers[i]);
      free(job->prefix);
    }
    free(job);
    close(dup_fd);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (prefix_length > 0) memcpy(job->prefix, prefix, prefix_length);
  job->prefix_length = prefix_length;
  pthread_mutex_init(&job->lock, NULL);
  pthread_cond_init(&job->changed, NULL);
  job->sock = dup_fd;
  job->file_fd = (int)file_fd;
  job->direct_fd = direct_fd >= 0 ? (int)direct_fd : -1;
  job->offset = offset;
  job->length = length;
  job->idle_ms = idle_ms > 0 ? idle_ms : 1;
  job->digest = digest;
  job->cancel = cancel;
  if (digest != NULL) napi_create_reference(env, argv[6], 1, &job->digest_ref);
  napi_create_reference(env, argv[8], 1, &job->cancel_ref);
  if (digest != NULL) digest->busy = 1;
  napi_value promise =
      start_socket_thread(env, "strata.receiveToFile", pump_main, pump_done, job, &job->deferred, &job->tsfn);
  if (promise == NULL) {
    if (digest != NULL) digest->busy = 0;
    close(dup_fd);
    if (job->digest_ref != NULL) napi_delete_reference(env, job->digest_ref);
    napi_delete_reference(env, job->cancel_ref);
    pump_free(job);
  }
  return promise;
}

typedef struct {
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
  napi_ref cancel_ref;
  volatile int32_t *cancel;
  int sock;
  int file_fd;
  int64_t offset;
  int64_t length;
  int64_t idle_ms;
  int64_t sent;
  int err;
  const char *syscall_name;
} SendJob;

static void *send_main(void *arg) {
  SendJob *job = arg;
  off_t position = (off_t)job->offset;
  int64_t idle = 0;
  int err = 0;
  const char *syscall_name = "sendfile";
  while (job->sent < job->length) {
    if (job->cancel[0] != 0) {
      err = ECANCELED;
      break;
    }
    int64_t left = job->length - job->sent;
    ssize_t n = sendfile(job->sock, job->file_fd, &position, left > (1 << 30) ? (1 << 30) : (size_t)left);
    if (n > 0) {
      job->sent += n;
      idle = 0;
      continue;
    }
    if (n == 0) {
      err = EIO;  // the file ended before `length`
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      err = errno;
      break;
    }
    err = wait_socket(job->sock, POLLOUT, &idle, job->idle_ms, &syscall_name);
    if (err != 0) break;
  }
  job->err = err;
  job->syscall_name = syscall_name;
  close(job->sock);
  finish_socket_thread(job->tsfn, job);
  return NULL;
}

static void send_done(napi_env env, napi_value js_callback, void *context, void *data) {
  SendJob *job = data;
  if (env != NULL) {
    if (job->err == 0) {
      napi_value sent;
      napi_create_int64(env, job->sent, &sent);
      napi_resolve_deferred(env, job->deferred, sent);
    } else {
      throw_errno(env, job->err, job->syscall_name, NULL, job->err == EIO ? "the file is shorter than expected" : NULL);
      napi_value error, sent;
      napi_get_and_clear_last_exception(env, &error);
      napi_create_int64(env, job->sent, &sent);
      napi_set_named_property(env, error, "sent", sent);
      napi_reject_deferred(env, job->deferred, error);
    }
    napi_delete_reference(env, job->cancel_ref);
  }
  free(job);
}

static napi_value js_send_file_to_socket(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "sendFileToSocket(socketFd, fileFd, offset, length, idleMs, cancel)");
    return NULL;
  }
  int64_t sock, file_fd, offset, length, idle_ms;
  if (!get_int64_arg(env, argv[0], "socketFd", &sock) || !get_int64_arg(env, argv[1], "fileFd", &file_fd) ||
      !get_int64_arg(env, argv[2], "offset", &offset) || !get_int64_arg(env, argv[3], "length", &length) ||
      !get_int64_arg(env, argv[4], "idleMs", &idle_ms))
    return NULL;
  volatile int32_t *cancel = get_cancel_flag(env, argv[5], "sendFileToSocket");
  if (cancel == NULL) return NULL;
  int dup_fd = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return throw_errno(env, errno, "dup", NULL, NULL);
  SendJob *job = calloc(1, sizeof *job);
  if (job == NULL) {
    close(dup_fd);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->sock = dup_fd;
  job->file_fd = (int)file_fd;
  job->offset = offset;
  job->length = length;
  job->idle_ms = idle_ms > 0 ? idle_ms : 1;
  job->cancel = cancel;
  napi_create_reference(env, argv[5], 1, &job->cancel_ref);
  napi_value promise =
      start_socket_thread(env, "strata.sendFileToSocket", send_main, send_done, job, &job->deferred, &job->tsfn);
  if (promise == NULL) {
    close(dup_fd);
    napi_delete_reference(env, job->cancel_ref);
    free(job);
  }
  return promise;
}

void strata_register_blobio(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"tuneMalloc", NULL, js_tune_malloc, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestCreate", NULL, js_digest_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestUpdateAsync", NULL, js_digest_update_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"digestFinal", NULL, js_digest_final, NULL, NULL, NULL, napi_enumerable, NULL},
      {"alignedBuffer", NULL, js_aligned_buffer, NULL, NULL, NULL, napi_enumerable, NULL},
      {"receiveToFile", NULL, js_receive_to_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFileToSocket", NULL, js_send_file_to_socket, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
