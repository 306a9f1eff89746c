// Strata's N-API addon: the few Linux syscalls Node's fs cannot make (see docs/node-syscalls.md).
// Every function but syncfsAsync is synchronous and throws errors shaped like Node's fs errors
// (`code`, `errno` (negative), `syscall`, `path`), so callers handle both the same way.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>

#include "errors.h"

#define MAX_ARGS 6

// ---------------------------------------------------------------------------------------------
// Errors

napi_value throw_errno(napi_env env, int err, const char *syscall_name, const char *path, const char *detail) {
  // glibc's name first: libuv has none for some errnos (e.g. ECHILD).
  const char *code = strerrorname_np(err);
  if (code == NULL) code = uv_err_name(-err);
  const char *text = uv_strerror(-err);
  size_t len = strlen(code) + strlen(text) + strlen(syscall_name) + (path ? strlen(path) : 0) +
               (detail ? strlen(detail) : 0) + 16;
  char *message = malloc(len);
  if (message == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (path != NULL)
    snprintf(message, len, "%s: %s, %s '%s'%s%s", code, text, syscall_name, path, detail ? ": " : "",
             detail ? detail : "");
  else
    snprintf(message, len, "%s: %s, %s%s%s", code, text, syscall_name, detail ? ": " : "", detail ? detail : "");

  napi_value js_message, js_code, error, value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_message);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code);
  napi_create_error(env, js_code, js_message, &error);
  free(message);
  napi_create_int32(env, -err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  if (path != NULL) {
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "path", value);
  }
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// Argument helpers. Strings are copied into malloc'd buffers that the caller frees.

static napi_valuetype type_of(napi_env env, napi_value value) {
  napi_valuetype type = napi_undefined;
  napi_typeof(env, value, &type);
  return type;
}

napi_value queue_promise_work(napi_env env, const char *name, napi_async_execute_callback execute,
                              napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                              napi_async_work *work) {
  napi_value promise, resource_name;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_create_async_work(env, NULL, resource_name, execute, complete, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

static int is_nullish(napi_env env, napi_value value) {
  napi_valuetype type = type_of(env, value);
  return type == napi_null || type == napi_undefined;
}

// Returns a malloc'd UTF-8 copy, or NULL after throwing. Strings with NUL bytes are refused, as
// Node's fs does, so that "a\0b" cannot silently become "a".
static char *get_string(napi_env env, napi_value value, const char *what) {
  size_t len = 0;
  if (type_of(env, value) != napi_string) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a string", what);
    throw_type(env, message);
    return NULL;
  }
  napi_get_value_string_utf8(env, value, NULL, 0, &len);
  char *out = malloc(len + 1);
  if (out == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, out, len + 1, &len);
  if (strlen(out) != len) {
    free(out);
    char message[128];
    snprintf(message, sizeof message, "%s must not contain NUL bytes", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", message);
    return NULL;
  }
  return out;
}

// Like get_string, but null/undefined give *out = NULL and success.
static int get_optional_string(napi_env env, napi_value value, const char *what, char **out) {
  *out = NULL;
  if (is_nullish(env, value)) return 1;
  *out = get_string(env, value, what);
  return *out != NULL;
}

static int get_int64(napi_env env, napi_value value, const char *what, int64_t *out) {
  if (type_of(env, value) != napi_number) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a number", what);
    throw_type(env, message);
    return 0;
  }
  napi_get_value_int64(env, value, out);
  return 1;
}

static int get_optional_int64(napi_env env, napi_value value, const char *what, int64_t fallback,
                              int64_t *out) {
  if (is_nullish(env, value)) {
    *out = fallback;
    return 1;
  }
  return get_int64(env, value, what, out);
}

static napi_value undefined(napi_env env) {
  napi_value value;
  napi_get_undefined(env, &value);
  return value;
}

#define ARGS(n)                                                                                      \
  size_t argc = MAX_ARGS;                                                                            \
  napi_value argv[MAX_ARGS];                                                                         \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                                              \
  for (size_t i = argc; i < MAX_ARGS; i++) napi_get_undefined(env, &argv[i]);                        \
  if (argc < (n)) return throw_type(env, "missing arguments")

// ---------------------------------------------------------------------------------------------
// mknod(path, mode, major, minor)

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  ARGS(4);
  int64_t mode, major_n, minor_n;
  if (!get_int64(env, argv[1], "mode", &mode) || !get_int64(env, argv[2], "major", &major_n) ||
      !get_int64(env, argv[3], "minor", &minor_n))
    return NULL;
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  napi_value result = undefined(env);
  if (mknod(path, (mode_t)mode, makedev((unsigned)major_n, (unsigned)minor_n)) != 0)
    result = throw_errno(env, errno, "mknod", path, NULL);
  free(path);
  return result;
}

// ---------------------------------------------------------------------------------------------
// xattrs, never following a final symlink (a layer's symlink may point at a host file)

static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t flags;
  if (!get_optional_int64(env, argv[3], "flags", 0, &flags)) return NULL;
  const void *data = NULL;
  size_t size = 0;
  char *string_value = NULL;
  bool is_buffer = false;
  napi_is_buffer(env, argv[2], &is_buffer);
  if (is_buffer) {
    void *buffer_data;
    napi_get_buffer_info(env, argv[2], &buffer_data, &size);
    data = buffer_data;
  } else if (type_of(env, argv[2]) == napi_string) {
    napi_get_value_string_utf8(env, argv[2], NULL, 0, &size);
    string_value = malloc(size + 1);
    if (string_value == NULL) return throw_errno(env, ENOMEM, "lsetxattr", NULL, NULL);
    napi_get_value_string_utf8(env, argv[2], string_value, size + 1, &size);
    data = string_value;
  } else {
    return throw_type(env, "value must be a Buffer or a string");
  }
  char *path = get_string(env, argv[0], "path");
  char *name = path ? get_string(env, argv[1], "name") : NULL;
  napi_value result = NULL;
  if (path != NULL && name != NULL) {
    result = undefined(env);
    if (lsetxattr(path, name, data, size, (int)flags) != 0) {
      char detail[300];
      snprintf(detail, sizeof detail, "%s (%zu bytes)", name, size);
      result = throw_errno(env, errno, "lsetxattr", path, detail);
    }
  }
  free(string_value);
  free(path);
  free(name);
  return result;
}

static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  char *name = get_string(env, argv[1], "name");
  if (name == NULL) {
    free(path);
    return NULL;
  }
  napi_value result = NULL;
  // The value can change size between the two calls; retry on ERANGE.
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) {
      if (errno == ENODATA) napi_get_null(env, &result);
      else result = throw_errno(env, errno, "lgetxattr", path, name);
      break;
    }
    void *data;
    napi_value buffer;
    napi_create_buffer(env, (size_t)size, &data, &buffer);
    ssize_t got = size == 0 ? 0 : lgetxattr(path, name, data, (size_t)size);
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) {
      if (errno == ENODATA) napi_get_null(env, &result);
      else result = throw_errno(env, errno, "lgetxattr", path, name);
      break;
    }
    if (got < size) {
      void *copy;
      napi_create_buffer_copy(env, (size_t)got, data, &copy, &buffer);
    }
    result = buffer;
    break;
  }
  if (result == NULL) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) throw_errno(env, ERANGE, "lgetxattr", path, name);
  }
  free(path);
  free(name);
  return result;
}

static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  napi_value result = NULL;
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) {
      result = throw_errno(env, errno, "llistxattr", path, NULL);
      break;
    }
    char *names = malloc((size_t)size + 1);
    if (names == NULL) {
      result = throw_errno(env, ENOMEM, "llistxattr", path, NULL);
      break;
    }
    ssize_t got = size == 0 ? 0 : llistxattr(path, names, (size_t)size);
    if (got < 0) {
      int err = errno;
      free(names);
      if (err == ERANGE) continue;
      result = throw_errno(env, err, "llistxattr", path, NULL);
      break;
    }
    napi_create_array(env, &result);
    uint32_t index = 0;
    for (ssize_t offset = 0; offset < got;) {
      size_t len = strnlen(names + offset, (size_t)(got - offset));
      if (len > 0) {
        napi_value name;
        napi_create_string_utf8(env, names + offset, len, &name);
        napi_set_element(env, result, index++, name);
      }
      offset += (ssize_t)len + 1;
    }
    free(names);
    break;
  }
  free(path);
  return result;
}

static napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  char *name = get_string(env, argv[1], "name");
  napi_value result = NULL;
  if (name != NULL) {
    result = undefined(env);
    if (lremovexattr(path, name) != 0) result = throw_errno(env, errno, "lremovexattr", path, name);
  }
  free(path);
  free(name);
  return result;
}

// ---------------------------------------------------------------------------------------------
// mount(source, target, fstype, flags, data) and umount2(target, flags)

static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(5);
  int64_t flags;
  if (!get_int64(env, argv[3], "flags", &flags)) return NULL;
  char *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
  napi_value result = NULL;
  if (get_optional_string(env, argv[0], "source", &source) &&
      (target = get_string(env, argv[1], "target")) != NULL &&
      get_optional_string(env, argv[2], "fstype", &fstype) &&
      get_optional_string(env, argv[4], "data", &data)) {
    result = undefined(env);
    if (mount(source, target, fstype, (unsigned long)flags, data) != 0)
      result = throw_errno(env, errno, "mount", target, NULL);
  }
  free(source);
  free(target);
  free(fstype);
  free(data);
  return result;
}

static napi_value js_umount2(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t flags;
  if (!get_optional_int64(env, argv[1], "flags", 0, &flags)) return NULL;
  char *target = get_string(env, argv[0], "target");
  if (target == NULL) return NULL;
  napi_value result = undefined(env);
  if (umount2(target, (int)flags) != 0) result = throw_errno(env, errno, "umount2", target, NULL);
  free(target);
  return result;
}

// ---------------------------------------------------------------------------------------------
// lutimesNs(path, atimeNs, mtimeNs): fs.lutimes takes seconds as a double and loses nanoseconds.

static int get_timespec(napi_env env, napi_value value, const char *what, struct timespec *ts) {
  if (type_of(env, value) != napi_bigint) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a bigint (nanoseconds)", what);
    throw_type(env, message);
    return 0;
  }
  int64_t ns;
  bool lossless;
  napi_get_value_bigint_int64(env, value, &ns, &lossless);
  if (!lossless) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "time out of range");
    return 0;
  }
  // Floor division so that times before 1970 keep 0 <= tv_nsec < 1e9.
  int64_t sec = ns / 1000000000;
  int64_t nsec = ns % 1000000000;
  if (nsec < 0) {
    nsec += 1000000000;
    sec -= 1;
  }
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)nsec;
  return 1;
}

static napi_value js_lutimes_ns(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct timespec times[2];
  if (!get_timespec(env, argv[1], "atimeNs", &times[0]) || !get_timespec(env, argv[2], "mtimeNs", &times[1]))
    return NULL;
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  napi_value result = undefined(env);
  if (utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) != 0)
    result = throw_errno(env, errno, "utimensat", path, NULL);
  free(path);
  return result;
}

// ---------------------------------------------------------------------------------------------
// mountOverlay(lowerDirs, upperDir, workDir, target, extraOptions)
//
// The new mount API (fsopen/fsconfig/fsmount/move_mount) passes each lower dir as its own
// "lowerdir+" parameter (kernel >= 6.8), so neither mount(2)'s one-page limit on the option string
// nor ':' and ',' inside paths are a problem.

// Appends the kernel's own explanation (read from the fs context) to the error, e.g.
// "e overlay: failed to resolve '/x': -2".
static void read_fs_log(int fsfd, char *out, size_t out_size) {
  out[0] = '\0';
  size_t used = 0;
  char line[512];
  for (int i = 0; i < 16; i++) {
    ssize_t n = read(fsfd, line, sizeof line - 1);
    if (n <= 0) break;
    line[n] = '\0';
    if (n > 0 && line[n - 1] == '\n') line[n - 1] = '\0';
    int written = snprintf(out + used, out_size - used, "%s%s", used ? "; " : "", line);
    if (written < 0 || (size_t)written >= out_size - used) break;
    used += (size_t)written;
  }
}

static napi_value throw_fs_error(napi_env env, int err, int fsfd, const char *syscall_name, const char *path,
                                 const char *key) {
  char log[1024];
  char detail[1400];
  log[0] = '\0';
  if (fsfd >= 0) read_fs_log(fsfd, log, sizeof log);
  if (key != NULL && log[0] != '\0') snprintf(detail, sizeof detail, "%s: %s", key, log);
  else if (key != NULL) snprintf(detail, sizeof detail, "%s", key);
  else snprintf(detail, sizeof detail, "%s", log);
  return throw_errno(env, err, syscall_name, path, detail[0] ? detail : NULL);
}

static napi_value js_mount_overlay(napi_env env, napi_callback_info info) {
  ARGS(4);
  bool is_array = false;
  napi_is_array(env, argv[0], &is_array);
  if (!is_array) return throw_type(env, "lowerDirs must be an array of strings");
  uint32_t lower_count = 0;
  napi_get_array_length(env, argv[0], &lower_count);
  if (lower_count == 0) return throw_type(env, "lowerDirs must not be empty");

  char *upper = NULL, *work = NULL, *target = NULL, *extra = NULL;
  napi_value result = NULL;
  int fsfd = -1, mntfd = -1;
  if (!get_optional_string(env, argv[1], "upperDir", &upper) ||
      !get_optional_string(env, argv[2], "workDir", &work) ||
      (target = get_string(env, argv[3], "target")) == NULL ||
      !get_optional_string(env, argv[4], "extraOptions", &extra))
    goto done;

  fsfd = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
  if (fsfd < 0) {
    result = throw_errno(env, errno, "fsopen", target, "overlay");
    goto done;
  }
  if (syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "source", "overlay", 0) != 0) {
    result = throw_fs_error(env, errno, fsfd, "fsconfig", target, "source");
    goto done;
  }
  for (uint32_t i = 0; i < lower_count; i++) {
    napi_value element;
    napi_get_element(env, argv[0], i, &element);
    char *lower = get_string(env, element, "lowerDirs[i]");
    if (lower == NULL) goto done;
    long rc = syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "lowerdir+", lower, 0);
    int err = errno;
    if (rc != 0) {
      char key[64];
      snprintf(key, sizeof key, "lowerdir+ #%u", i);
      result = throw_fs_error(env, err, fsfd, "fsconfig", lower, key);
      free(lower);
      goto done;
    }
    free(lower);
  }
  if (upper != NULL && syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "upperdir", upper, 0) != 0) {
    result = throw_fs_error(env, errno, fsfd, "fsconfig", upper, "upperdir");
    goto done;
  }
  if (work != NULL && syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "workdir", work, 0) != 0) {
    result = throw_fs_error(env, errno, fsfd, "fsconfig", work, "workdir");
    goto done;
  }
  if (extra != NULL) {
    // "key=value" → FSCONFIG_SET_STRING, "key" → FSCONFIG_SET_FLAG; comma-separated.
    char *save = NULL;
    for (char *option = strtok_r(extra, ",", &save); option != NULL; option = strtok_r(NULL, ",", &save)) {
      if (*option == '\0') continue;
      char *eq = strchr(option, '=');
      long rc;
      if (eq != NULL) {
        *eq = '\0';
        rc = syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, option, eq + 1, 0);
      } else {
        rc = syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_FLAG, option, NULL, 0);
      }
      if (rc != 0) {
        result = throw_fs_error(env, errno, fsfd, "fsconfig", target, option);
        goto done;
      }
    }
  }
  if (syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
    result = throw_fs_error(env, errno, fsfd, "fsconfig", target, "create");
    goto done;
  }
  mntfd = (int)syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, 0);
  if (mntfd < 0) {
    result = throw_fs_error(env, errno, fsfd, "fsmount", target, NULL);
    goto done;
  }
  if (syscall(SYS_move_mount, mntfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    result = throw_errno(env, errno, "move_mount", target, NULL);
    goto done;
  }
  result = undefined(env);

done:
  if (mntfd >= 0) close(mntfd);
  if (fsfd >= 0) close(fsfd);
  free(upper);
  free(work);
  free(target);
  free(extra);
  return result;
}

// ---------------------------------------------------------------------------------------------
// openInRoot(rootDirFdOrPath, relativePath, flags, mode, extraResolve?) → fd
//
// openat2(RESOLVE_IN_ROOT) resolves ".." and absolute symlinks as if rootDir were "/", the way a
// chroot would, so a path inside a container root can never reach the host. Magic links
// (/proc/<pid>/fd/...) are refused as well.

static napi_value js_open_in_root(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t flags, mode, extra_resolve;
  if (!get_int64(env, argv[2], "flags", &flags) || !get_optional_int64(env, argv[3], "mode", 0, &mode) ||
      !get_optional_int64(env, argv[4], "resolve", 0, &extra_resolve))
    return NULL;
  char *root_path = NULL;
  int root_fd = -1, own_root = 0;
  if (type_of(env, argv[0]) == napi_number) {
    int64_t fd;
    napi_get_value_int64(env, argv[0], &fd);
    root_fd = (int)fd;
  } else {
    root_path = get_string(env, argv[0], "root");
    if (root_path == NULL) return NULL;
    root_fd = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
      napi_value error = throw_errno(env, errno, "open", root_path, NULL);
      free(root_path);
      return error;
    }
    own_root = 1;
  }
  char *relative = get_string(env, argv[1], "relativePath");
  napi_value result = NULL;
  if (relative != NULL) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | __O_TMPFILE)) ? (uint64_t)mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (uint64_t)extra_resolve;
    // An empty path means the root itself.
    const char *target = relative[0] == '\0' ? "." : relative;
    long fd = -1;
    // EAGAIN: a rename raced with the lookup; the kernel asks us to retry.
    for (int attempt = 0; attempt < 16; attempt++) {
      fd = syscall(SYS_openat2, root_fd, target, &how, sizeof how);
      if (fd >= 0 || errno != EAGAIN) break;
    }
    if (fd < 0) result = throw_errno(env, errno, "openat2", relative, NULL);
    else napi_create_int32(env, (int32_t)fd, &result);
  }
  if (own_root) close(root_fd);
  free(root_path);
  free(relative);
  return result;
}

// ---------------------------------------------------------------------------------------------
// syncfs(path): flush the whole file system holding `path` in one call, instead of an fsync per
// file, before a freshly unpacked layer is recorded as committed.

static napi_value js_syncfs(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  napi_value result = undefined(env);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  if (fd < 0) fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) result = throw_errno(env, errno, "open", path, NULL);
  else {
    if (syncfs(fd) != 0) result = throw_errno(env, errno, "syncfs", path, NULL);
    close(fd);
  }
  free(path);
  return result;
}

// scanDir(path) → { names: string[], stats: Float64Array }: every entry of a directory but . and ..,
// in readdir order, with its lstat figures, SCAN_FIELDS numbers per entry: mode, size, mtimeMs,
// ctimeMs, ino (the same doubles Node's fs.Stats has). One call and fstatat(2) relative to the open
// directory instead of a path walk and a Stats object per entry: `strata build` describes a context
// of thousands of files with it. An entry that vanished between readdir and fstatat is left out.

#define SCAN_FIELDS 5

static double ms_of(struct timespec t) { return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6; }

static napi_value js_scan_dir(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *dir = fd < 0 ? NULL : fdopendir(fd);
  if (dir == NULL) {
    int err = errno;
    if (fd >= 0) close(fd);
    napi_value thrown = throw_errno(env, err, "scandir", path, NULL);
    free(path);
    return thrown;
  }
  size_t cap = 64, count = 0;
  double *figures = malloc(cap * SCAN_FIELDS * sizeof(double));
  if (figures == NULL) {
    closedir(dir);
    free(path);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_value names;
  napi_create_array(env, &names);
  napi_value result = NULL;
  for (;;) {
    errno = 0;
    struct dirent *d = readdir(dir);
    if (d == NULL) {
      if (errno != 0) result = throw_errno(env, errno, "scandir", path, NULL);
      break;
    }
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      result = throw_errno(env, errno, "lstat", path, d->d_name);
      break;
    }
    if (count == cap) {
      cap *= 2;
      double *grown = realloc(figures, cap * SCAN_FIELDS * sizeof(double));
      if (grown == NULL) {
        napi_throw_error(env, "ENOMEM", "out of memory");
        break;
      }
      figures = grown;
    }
    double *f = figures + count * SCAN_FIELDS;
    f[0] = (double)st.st_mode;
    f[1] = (double)st.st_size;
    f[2] = ms_of(st.st_mtim);
    f[3] = ms_of(st.st_ctim);
    f[4] = (double)st.st_ino;
    napi_value name;
    napi_create_string_utf8(env, d->d_name, NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, names, (uint32_t)count, name);
    count++;
  }
  closedir(dir);
  free(path);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (result != NULL || pending) {
    free(figures);
    return NULL;
  }
  napi_value buffer, stats, out;
  void *data = NULL;
  napi_create_arraybuffer(env, count * SCAN_FIELDS * sizeof(double), &data, &buffer);
  if (count > 0) memcpy(data, figures, count * SCAN_FIELDS * sizeof(double));
  free(figures);
  napi_create_typedarray(env, napi_float64_array, count * SCAN_FIELDS, buffer, 0, &stats);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "names", names);
  napi_set_named_property(env, out, "stats", stats);
  return out;
}

// treeSize(path) → number: the bytes of the regular files and symlinks below a directory, each
// hard-linked inode counted once (what `du --apparent-size` gives, and docker's SizeRw). Entries that
// vanish or cannot be read during the walk are skipped: a running container changes its layer at
// will. `ps --size` walks every container's layer on each request; in C that is one fstatat per
// entry relative to the open directory, with no object made per file.

typedef struct {
  dev_t dev;
  ino_t ino;
} InodeKey;

typedef struct {
  InodeKey *keys;
  size_t count, cap;
} InodeSet;

// Returns 1 when (dev, ino) was already counted; records it otherwise. Linear: hard links in a
// container's layer are few.
static int inode_seen(InodeSet *set, dev_t dev, ino_t ino) {
  for (size_t i = 0; i < set->count; i++)
    if (set->keys[i].dev == dev && set->keys[i].ino == ino) return 1;
  if (set->count == set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 16;
    InodeKey *grown = realloc(set->keys, cap * sizeof(InodeKey));
    if (grown == NULL) return 0;
    set->keys = grown;
    set->cap = cap;
  }
  set->keys[set->count++] = (InodeKey){dev, ino};
  return 0;
}

static uint64_t tree_size_at(int dirfd_, InodeSet *links, int depth) {
  DIR *dir = fdopendir(dirfd_);
  if (dir == NULL) {
    close(dirfd_);
    return 0;
  }
  uint64_t total = 0;
  struct dirent *d;
  while ((d = readdir(dir)) != NULL) {
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    if (d->d_type == DT_DIR || d->d_type == DT_UNKNOWN) {
      int child = openat(dirfd(dir), d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child >= 0) {
        // Bounded depth: a tree deeper than this is not a container layer anyone made on purpose.
        if (depth < 512) total += tree_size_at(child, links, depth + 1);
        else close(child);
        continue;
      }
      if (d->d_type == DT_DIR) continue;
    }
    if (d->d_type != DT_REG && d->d_type != DT_LNK && d->d_type != DT_UNKNOWN) continue;
    struct stat st;
    if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) continue;
    if (st.st_nlink > 1 && inode_seen(links, st.st_dev, st.st_ino)) continue;
    total += (uint64_t)st.st_size;
  }
  closedir(dir);
  return total;
}

static napi_value js_tree_size(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  uint64_t total = 0;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(path);
  if (fd >= 0) {
    InodeSet links = {NULL, 0, 0};
    total = tree_size_at(fd, &links, 0);
    free(links.keys);
  }
  napi_value result;
  napi_create_double(env, (double)total, &result);
  return result;
}

// syncfsAsync(path) → Promise: the same on a libuv pool thread, so the writeback (tens to hundreds of
// milliseconds after a large unpack) does not stall the event loop.

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *path;
  int err;
  const char *syscall_name;
} SyncfsJob;

static void syncfs_execute(napi_env env, void *data) {
  SyncfsJob *job = data;
  int fd = open(job->path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
  if (fd < 0) fd = open(job->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job->err = errno;
    job->syscall_name = "open";
    return;
  }
  if (syncfs(fd) != 0) {
    job->err = errno;
    job->syscall_name = "syncfs";
  }
  close(fd);
}

static void syncfs_complete(napi_env env, napi_status status, void *data) {
  SyncfsJob *job = data;
  if (job->err == 0 && status == napi_ok) {
    napi_resolve_deferred(env, job->deferred, undefined(env));
  } else {
    // throw_errno builds the fs-shaped error; take it back as a value to reject with.
    throw_errno(env, job->err != 0 ? job->err : EINTR, job->err != 0 ? job->syscall_name : "syncfs",
                job->path, NULL);
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_async_work(env, job->work);
  free(job->path);
  free(job);
}

static napi_value js_syncfs_async(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  SyncfsJob *job = calloc(1, sizeof *job);
  if (job == NULL) {
    free(path);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->path = path;
  return queue_promise_work(env, "strata.syncfs", syncfs_execute, syncfs_complete, job, &job->deferred,
                            &job->work);
}

// ---------------------------------------------------------------------------------------------
// peerCredentials(fd) → { pid, uid, gid, groups }: who is at the other end of a unix socket.
// SO_PEERCRED gives the credentials the peer had at connect(); SO_PEERGROUPS (Linux 4.13) its
// supplementary groups. Node exposes neither, and the API's access control is keyed on them.

static napi_value js_peer_credentials(napi_env env, napi_callback_info info) {
  ARGS(1);
  int64_t fd;
  if (!get_int64(env, argv[0], "fd", &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return throw_errno(env, errno, "getsockopt", NULL, "SO_PEERCRED");
  gid_t groups[256];
  socklen_t groups_len = sizeof groups;
  uint32_t group_count = 0;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERGROUPS, groups, &groups_len) == 0)
    group_count = groups_len / sizeof(gid_t);
  napi_value result, value, list;
  napi_create_object(env, &result);
  napi_create_int64(env, cred.pid, &value);
  napi_set_named_property(env, result, "pid", value);
  napi_create_int64(env, cred.uid, &value);
  napi_set_named_property(env, result, "uid", value);
  napi_create_int64(env, cred.gid, &value);
  napi_set_named_property(env, result, "gid", value);
  napi_create_array_with_length(env, group_count, &list);
  for (uint32_t i = 0; i < group_count; i++) {
    napi_create_int64(env, groups[i], &value);
    napi_set_element(env, list, i, value);
  }
  napi_set_named_property(env, result, "groups", list);
  return result;
}

// ---------------------------------------------------------------------------------------------
// mountIdmapped(source, target, usernsFd): an idmapped, read-only bind of `source` on `target`
// (open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY) + move_mount).
// Files owned by uid N on disk appear owned by the host uid the user namespace maps N to, so image
// layers serve a user-namespaced container without chowned copies.

static napi_value js_mount_idmapped(napi_env env, napi_callback_info info) {
  ARGS(3);
  int64_t userns_fd;
  if (!get_int64(env, argv[2], "usernsFd", &userns_fd)) return NULL;
  char *source = get_string(env, argv[0], "source");
  if (source == NULL) return NULL;
  char *target = get_string(env, argv[1], "target");
  if (target == NULL) {
    free(source);
    return NULL;
  }
  napi_value result = NULL;
  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) {
    result = throw_errno(env, errno, "open_tree", source, NULL);
    goto done;
  }
  struct mount_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY;
  attr.userns_fd = (uint64_t)userns_fd;
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    result = throw_errno(env, errno, "mount_setattr", source, "MOUNT_ATTR_IDMAP");
    goto done;
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    result = throw_errno(env, errno, "move_mount", target, NULL);
    goto done;
  }
  result = undefined(env);
done:
  if (tree >= 0) close(tree);
  free(source);
  free(target);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Module setup

static void set_constant(napi_env env, napi_value object, const char *name, int64_t value) {
  napi_value js_value;
  napi_create_int64(env, value, &js_value);
  napi_set_named_property(env, object, name, js_value);
}

// netlink.c: netlinkOpen, netlinkTransact (src/network/).
void strata_register_netlink(napi_env env, napi_value exports);
// lifecycle.c: pipeCloexec, spawnDetached, reapChild, umountAsync (src/runtime/spawn.ts, src/snapshots/overlay.ts).
void strata_register_lifecycle(napi_env env, napi_value exports);
// blobio.c: tuneMalloc, digest*, alignedBuffer, receiveToFile, sendFileToSocket (src/registry/).
void strata_register_blobio(napi_env env, napi_value exports);

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"mknod", NULL, js_mknod, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lsetxattr", NULL, js_lsetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgetxattr", NULL, js_lgetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"llistxattr", NULL, js_llistxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lremovexattr", NULL, js_lremovexattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2", NULL, js_umount2, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lutimesNs", NULL, js_lutimes_ns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mountOverlay", NULL, js_mount_overlay, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openInRoot", NULL, js_open_in_root, NULL, NULL, NULL, napi_enumerable, NULL},
      {"syncfs", NULL, js_syncfs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"syncfsAsync", NULL, js_syncfs_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scanDir", NULL, js_scan_dir, NULL, NULL, NULL, napi_enumerable, NULL},
      {"treeSize", NULL, js_tree_size, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCredentials", NULL, js_peer_credentials, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mountIdmapped", NULL, js_mount_idmapped, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  strata_register_netlink(env, exports);
  strata_register_lifecycle(env, exports);
  strata_register_blobio(env, exports);

  napi_value constants;
  napi_create_object(env, &constants);
  set_constant(env, constants, "S_IFMT", S_IFMT);
  set_constant(env, constants, "S_IFREG", S_IFREG);
  set_constant(env, constants, "S_IFDIR", S_IFDIR);
  set_constant(env, constants, "S_IFLNK", S_IFLNK);
  set_constant(env, constants, "S_IFCHR", S_IFCHR);
  set_constant(env, constants, "S_IFBLK", S_IFBLK);
  set_constant(env, constants, "S_IFIFO", S_IFIFO);
  set_constant(env, constants, "S_IFSOCK", S_IFSOCK);
  set_constant(env, constants, "MS_RDONLY", MS_RDONLY);
  set_constant(env, constants, "MS_NOSUID", MS_NOSUID);
  set_constant(env, constants, "MS_NODEV", MS_NODEV);
  set_constant(env, constants, "MS_NOEXEC", MS_NOEXEC);
  set_constant(env, constants, "MS_REMOUNT", MS_REMOUNT);
  set_constant(env, constants, "MS_BIND", MS_BIND);
  set_constant(env, constants, "MS_MOVE", MS_MOVE);
  set_constant(env, constants, "MS_REC", MS_REC);
  set_constant(env, constants, "MS_PRIVATE", MS_PRIVATE);
  set_constant(env, constants, "MS_SLAVE", MS_SLAVE);
  set_constant(env, constants, "MS_SHARED", MS_SHARED);
  set_constant(env, constants, "MS_UNBINDABLE", MS_UNBINDABLE);
  set_constant(env, constants, "MS_NOATIME", MS_NOATIME);
  set_constant(env, constants, "MS_RELATIME", MS_RELATIME);
  set_constant(env, constants, "MS_STRICTATIME", MS_STRICTATIME);
  set_constant(env, constants, "MNT_FORCE", MNT_FORCE);
  set_constant(env, constants, "MNT_DETACH", MNT_DETACH);
  set_constant(env, constants, "MNT_EXPIRE", MNT_EXPIRE);
  set_constant(env, constants, "UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW);
  set_constant(env, constants, "XATTR_CREATE", XATTR_CREATE);
  set_constant(env, constants, "XATTR_REPLACE", XATTR_REPLACE);
  set_constant(env, constants, "O_RDONLY", O_RDONLY);
  set_constant(env, constants, "O_WRONLY", O_WRONLY);
  set_constant(env, constants, "O_RDWR", O_RDWR);
  set_constant(env, constants, "O_CREAT", O_CREAT);
  set_constant(env, constants, "O_EXCL", O_EXCL);
  set_constant(env, constants, "O_TRUNC", O_TRUNC);
  set_constant(env, constants, "O_APPEND", O_APPEND);
  set_constant(env, constants, "O_DIRECTORY", O_DIRECTORY);
  set_constant(env, constants, "O_NOFOLLOW", O_NOFOLLOW);
  set_constant(env, constants, "O_CLOEXEC", O_CLOEXEC);
  set_constant(env, constants, "O_PATH", O_PATH);
  set_constant(env, constants, "O_NONBLOCK", O_NONBLOCK);
  set_constant(env, constants, "RESOLVE_NO_XDEV", RESOLVE_NO_XDEV);
  set_constant(env, constants, "RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS);
  set_constant(env, constants, "RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS);
  set_constant(env, constants, "RESOLVE_BENEATH", RESOLVE_BENEATH);
  set_constant(env, constants, "RESOLVE_IN_ROOT", RESOLVE_IN_ROOT);
  set_constant(env, constants, "RESOLVE_CACHED", RESOLVE_CACHED);
  napi_set_named_property(env, exports, "constants", constants);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
