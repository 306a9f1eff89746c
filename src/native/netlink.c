// Netlink (NETLINK_ROUTE) sockets for src/network/: open one inside any network namespace and run
// one request/response exchange on it. Messages are encoded and decoded in TypeScript
// (src/network/netlink.ts); this file only does what Node cannot: setns(2) around socket(2), and
// AF_NETLINK send/receive. Spawning `ip` costs 10-50 ms per call on our hosts; this costs microseconds.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>
#include <uv.h>

#include "errors.h"


static int open_socket(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  struct sockaddr_nl local = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

// netlinkOpen(netnsPath?: string | null): number
// With a path (/proc/<pid>/ns/net, a bind-mounted netns file) the socket is created inside that
// namespace: a netlink socket stays bound to the namespace it was created in. Only this thread
// switches, and only for the duration of socket(2); it is switched back before returning.
static napi_value js_netlink_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096] = {0};
  int has_path = 0;
  if (argc >= 1) {
    napi_valuetype type;
    napi_typeof(env, argv[0], &type);
    if (type == napi_string) {
      size_t len = 0;
      napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len);
      if (len == 0 || len >= sizeof path - 1) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "netnsPath is empty or too long");
        return NULL;
      }
      has_path = 1;
    } else if (type != napi_null && type != napi_undefined) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "netnsPath must be a string or null");
      return NULL;
    }
  }
  int fd;
  if (!has_path) {
    fd = open_socket();
    if (fd < 0) return throw_errno(env, -fd, "socket", NULL, NULL);
  } else {
    int target = open(path, O_RDONLY | O_CLOEXEC);
    if (target < 0) return throw_errno(env, errno, "open", NULL, NULL);
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) {
      int err = errno;
      close(target);
      return throw_errno(env, err, "open", NULL, NULL);
    }
    if (setns(target, CLONE_NEWNET) != 0) {
      int err = errno;
      close(target);
      close(self);
      return throw_errno(env, err, "setns", NULL, NULL);
    }
    fd = open_socket();
    if (setns(self, CLONE_NEWNET) != 0) {
      // Staying in the container's namespace would break every later socket of the daemon.
      abort();
    }
    close(target);
    close(self);
    if (fd < 0) return throw_errno(env, -fd, "socket", NULL, NULL);
  }
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// netnsCreate(): number
// A new, empty network namespace, returned as an open file descriptor (nothing is mounted; the
// namespace lives while the descriptor or a process in it does). Only this thread enters it, for
// the duration of unshare(2), and is switched back before returning. A container's interfaces can
// then be plugged in while the runtime is still creating the container, which joins it by path
// (/proc/<daemon pid>/fd/<fd>).
static napi_value js_netns_create(napi_env env, napi_callback_info info) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return throw_errno(env, errno, "open", NULL, NULL);
  if (unshare(CLONE_NEWNET) != 0) {
    int err = errno;
    close(self);
    return throw_errno(env, err, "unshare", NULL, NULL);
  }
  int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int err = errno;
  if (setns(self, CLONE_NEWNET) != 0) {
    // Staying in the new namespace would break every later socket of the daemon.
    abort();
  }
  close(self);
  if (fd < 0) return throw_errno(env, err, "open", NULL, NULL);
  napi_value result;
  napi_create_int32(env, fd, &result);
  return result;
}

// netlinkTransact(fd: number, request: Buffer): Buffer
// Sends one request (its nlmsghdr carries the sequence number) and returns every message received
// up to and including the NLMSG_ERROR (ack) or NLMSG_DONE (end of dump) that answers it.
static napi_value js_netlink_transact(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "missing arguments");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fd must be a number");
    return NULL;
  }
  bool is_buffer = false;
  napi_is_buffer(env, argv[1], &is_buffer);
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "request must be a Buffer");
    return NULL;
  }
  void *request;
  size_t request_len;
  napi_get_buffer_info(env, argv[1], &request, &request_len);
  if (request_len < sizeof(struct nlmsghdr)) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "request is shorter than a netlink header");
    return NULL;
  }
  uint32_t seq = ((struct nlmsghdr *)request)->nlmsg_seq;
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  ssize_t sent;
  do sent = sendto(fd, request, request_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
  while (sent < 0 && errno == EINTR);
  if (sent < 0) return throw_errno(env, errno, "sendto", NULL, NULL);

  size_t cap = 65536, len = 0;
  char *out = malloc(cap);
  char *chunk = malloc(65536);
  if (out == NULL || chunk == NULL) {
    free(out);
    free(chunk);
    return throw_errno(env, ENOMEM, "malloc", NULL, NULL);
  }
  int done = 0;
  while (!done) {
    ssize_t n;
    do n = recv(fd, chunk, 65536, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      int err = errno == EAGAIN ? ETIMEDOUT : errno;
      free(out);
      free(chunk);
      return throw_errno(env, err, "recv", NULL, NULL);
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)chunk; NLMSG_OK(h, (unsigned int)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq) continue;  // a stale answer to an earlier, timed-out request
      size_t msg_len = NLMSG_ALIGN(h->nlmsg_len);
      if (len + msg_len > cap) {
        while (len + msg_len > cap) cap *= 2;
        char *grown = realloc(out, cap);
        if (grown == NULL) {
          free(out);
          free(chunk);
          return throw_errno(env, ENOMEM, "realloc", NULL, NULL);
        }
        out = grown;
      }
      memcpy(out + len, h, h->nlmsg_len);
      memset(out + len + h->nlmsg_len, 0, msg_len - h->nlmsg_len);
      len += msg_len;
      if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) done = 1;
    }
  }
  free(chunk);
  napi_value result;
  void *data;
  napi_create_buffer_copy(env, len, out, &data, &result);
  free(out);
  return result;
}

void strata_register_netlink(napi_env env, napi_value exports) {
  napi_property_descriptor functions[] = {
      {"netlinkOpen", NULL, js_netlink_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsCreate", NULL, js_netns_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netlinkTransact", NULL, js_netlink_transact, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
