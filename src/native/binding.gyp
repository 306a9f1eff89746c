{
  "targets": [
    {
      "target_name": "strata_native",
      "sources": ["strata_native.c", "netlink.c", "lifecycle.c", "blobio.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
