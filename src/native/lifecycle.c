// System calls of a container's life that must neither fork the daemon nor block its event loop.
//
// Starting conmon (src/runtime/spawn.ts): libuv's uv_spawn forks the whole daemon, and the kernel
// copies the page tables of a ~70 MB process, which took 5-50 ms per container start on our hosts with
// the event loop blocked. posix_spawn(3) uses clone(CLONE_VM | CLONE_VFORK) in glibc: nothing is
// copied, and the call returns once the child has exec'd.
//
//   pipeCloexec()                              → [readFd, writeFd], both O_CLOEXEC
//   spawnDetached(file, argv, env, cwd, fds)   → pid; child fd i = fds[i] (-1: /dev/null), no other fd,
//                                                new session, default signal dispositions, empty mask
//   reapChild(pid)                             → exit status (128 + signal if killed), or -1 while the
//                                                child still runs (waitpid WNOHANG)
//
// Unmounting a container root (src/snapshots/overlay.ts): the last unmount of an overlay syncs the
// whole upper file system (ovl_sync_fs → sync_filesystem), 20-100+ ms when other processes have dirty
// data. umount2Async runs umount2 on libuv's thread pool and settles a promise.
//
//   umount2Async(target, flags)                → Promise<void>; rejects like umount2 (code, errno)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>

#include "errors.h"

#define MAX_CHILD_FDS 16


static char *sp_string(napi_env env, napi_value value) {
  size_t len = 0;
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type != napi_string) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "spawnDetached: strings expected");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, NULL, 0, &len);
  char *out = malloc(len + 1);
  if (!out) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, out, len + 1, &len);
  if (strlen(out) != len) {
    free(out);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "spawnDetached: strings must not contain NUL bytes");
    return NULL;
  }
  return out;
}

static void free_list(char **list) {
  if (!list) return;
  for (char **p = list; *p; p++) free(*p);
  free(list);
}

// A NULL-terminated copy of a JS string array, or NULL after throwing.
static char **sp_string_list(napi_env env, napi_value array) {
  bool is_array = false;
  napi_is_array(env, array, &is_array);
  if (!is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "spawnDetached: arrays expected");
    return NULL;
  }
  uint32_t n = 0;
  napi_get_array_length(env, array, &n);
  char **list = calloc(n + 1, sizeof(char *));
  if (!list) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    napi_get_element(env, array, i, &item);
    list[i] = sp_string(env, item);
    if (!list[i]) {
      free_list(list);
      return NULL;
    }
  }
  return list;
}

static napi_value js_pipe_cloexec(napi_env env, napi_callback_info info) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return throw_errno(env, errno, "pipe2", NULL, NULL);
  napi_value result, value;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, fds[0], &value);
  napi_set_element(env, result, 0, value);
  napi_create_int32(env, fds[1], &value);
  napi_set_element(env, result, 1, value);
  return result;
}

static napi_value js_spawn_detached(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value args[5];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "spawnDetached(file, argv, env, cwd, fds)");
    return NULL;
  }
  char *file = NULL, *cwd = NULL;
  char **child_argv = NULL, **child_env = NULL;
  int fds[MAX_CHILD_FDS];
  int moved[MAX_CHILD_FDS];
  uint32_t nfds = 0;
  napi_value result = NULL;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  int have_actions = 0, have_attr = 0;
  for (int i = 0; i < MAX_CHILD_FDS; i++) moved[i] = -1;

  if (!(file = sp_string(env, args[0]))) goto done;
  if (!(child_argv = sp_string_list(env, args[1]))) goto done;
  if (!(child_env = sp_string_list(env, args[2]))) goto done;
  if (!(cwd = sp_string(env, args[3]))) goto done;
  bool is_array = false;
  napi_is_array(env, args[4], &is_array);
  if (!is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "spawnDetached: fds must be an array");
    goto done;
  }
  napi_get_array_length(env, args[4], &nfds);
  if (nfds > MAX_CHILD_FDS) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "spawnDetached: too many fds");
    goto done;
  }
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value item;
    int32_t fd = -1;
    napi_get_element(env, args[4], i, &item);
    napi_get_value_int32(env, item, &fd);
    fds[i] = fd;
  }
  // A source fd below nfds could be overwritten by an earlier dup2 in the child: move it up first.
  for (uint32_t i = 0; i < nfds; i++) {
    if (fds[i] >= 0 && (uint32_t)fds[i] < nfds) {
      moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, (int)nfds);
      if (moved[i] < 0) {
        result = throw_errno(env, errno, "fcntl", NULL, NULL);
        goto done;
      }
      fds[i] = moved[i];
    }
  }

  int err = posix_spawn_file_actions_init(&actions);
  if (err) {
    result = throw_errno(env, err, "posix_spawn_file_actions_init", NULL, NULL);
    goto done;
  }
  have_actions = 1;
  for (uint32_t i = 0; i < nfds && !err; i++) {
    if (fds[i] < 0)
      err = posix_spawn_file_actions_addopen(&actions, (int)i, "/dev/null", O_RDWR, 0);
    else
      err = posix_spawn_file_actions_adddup2(&actions, fds[i], (int)i);
  }
  // Nothing else of the daemon's leaks into the helper, whether or not it was opened O_CLOEXEC.
  if (!err) err = posix_spawn_file_actions_addclosefrom_np(&actions, (int)nfds);
  if (!err) err = posix_spawn_file_actions_addchdir_np(&actions, cwd);
  if (err) {
    result = throw_errno(env, err, "posix_spawn_file_actions", NULL, NULL);
    goto done;
  }
  err = posix_spawnattr_init(&attr);
  if (err) {
    result = throw_errno(env, err, "posix_spawnattr_init", NULL, NULL);
    goto done;
  }
  have_attr = 1;
  sigset_t mask, defaults;
  sigemptyset(&mask);
  // Node ignores SIGPIPE; an ignored disposition survives exec, so reset every signal. glibc's
  // sigfillset leaves out its two internal signals (SIGCANCEL, SIGSETXID: 32 and 33), which its
  // posix_spawn would then set to SIG_IGN in the child, where a non-glibc program would keep them
  // ignored; set their bits directly so they too go back to SIG_DFL, as after libuv's fork + exec.
  sigfillset(&defaults);
  for (int sig = SIGRTMIN - 2; sig < SIGRTMIN; sig++)
    if (sig > 31) defaults.__val[(sig - 1) / (8 * sizeof(unsigned long))] |= 1UL << ((sig - 1) % (8 * sizeof(unsigned long)));
  posix_spawnattr_setsigmask(&attr, &mask);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid;
  err = posix_spawn(&pid, file, &actions, &attr, child_argv, child_env);
  if (err) {
    result = throw_errno(env, err, "posix_spawn", file, NULL);
    goto done;
  }
  napi_create_int32(env, pid, &result);

done:
  if (have_actions) posix_spawn_file_actions_destroy(&actions);
  if (have_attr) posix_spawnattr_destroy(&attr);
  for (int i = 0; i < MAX_CHILD_FDS; i++)
    if (moved[i] >= 0) close(moved[i]);
  free(file);
  free(cwd);
  free_list(child_argv);
  free_list(child_env);
  return result;
}

static napi_value js_reap_child(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value args[1];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  int32_t pid = 0;
  if (argc < 1 || napi_get_value_int32(env, args[0], &pid) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "reapChild: pid must be a positive number");
    return NULL;
  }
  int status = 0;
  pid_t r;
  do r = waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "waitpid", NULL, NULL);
  int code = -1;
  if (r == pid) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  napi_value result;
  napi_create_int32(env, code, &result);
  return result;
}

struct umount_work {
  napi_async_work work;
  napi_deferred deferred;
  char *target;
  int flags;
  int err;
};

static void umount_execute(napi_env env, void *data) {
  struct umount_work *w = data;
  w->err = umount2(w->target, w->flags) == 0 ? 0 : errno;
}

static void umount_complete(napi_env env, napi_status status, void *data) {
  struct umount_work *w = data;
  if (w->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, w->deferred, undef);
  } else {
    // Build the error as throw_errno shapes it, then hand it to the promise instead of throwing.
    throw_errno(env, w->err, "umount2", w->target, NULL);
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_reject_deferred(env, w->deferred, error);
  }
  napi_delete_async_work(env, w->work);
  free(w->target);
  free(w);
}

static napi_value js_umount2_async(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "umount2Async(target, flags)");
    return NULL;
  }
  int32_t flags = 0;
  if (argc > 1) napi_get_value_int32(env, args[1], &flags);
  struct umount_work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  w->flags = flags;
  if (!(w->target = sp_string(env, args[0]))) {
    free(w);
    return NULL;
  }
  return queue_promise_work(env, "strata:umount2", umount_execute, umount_complete, w, &w->deferred,
                            &w->work);
}

void strata_register_lifecycle(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"pipeCloexec", NULL, js_pipe_cloexec, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawnDetached", NULL, js_spawn_detached, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reapChild", NULL, js_reap_child, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2Async", NULL, js_umount2_async, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
